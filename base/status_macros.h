// One-line helpers for propagating absl::Status values; nothing else hides control flow.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define XL_CONCAT_INNER(a, b) a##b
#define XL_CONCAT(a, b) XL_CONCAT_INNER(a, b)

// Returns from the enclosing function when `expr` yields a non-OK status.
#define RETURN_IF_ERROR(expr) \
  do { if (absl::Status _st = (expr); !_st.ok()) return _st; } while (0)

// `lhs = value of a StatusOr expression`, returning its status when it holds an error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  auto XL_CONCAT(_so_, __LINE__) = (expr); \
  if (!XL_CONCAT(_so_, __LINE__).ok()) return XL_CONCAT(_so_, __LINE__).status(); \
  lhs = std::move(XL_CONCAT(_so_, __LINE__)).value()
