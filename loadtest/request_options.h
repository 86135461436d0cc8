// Sampling settings every load-test request carries, whatever the protocol.
#pragma once

#include <optional>
#include <string>

namespace xlserve::loadtest {

struct RequestOptions {
  std::string model;                  // empty: the server's model
  std::optional<double> temperature;  // absent: the server's default (greedy for xlserve)
  // Generate exactly max_tokens: fixed output lengths make runs comparable. Over REST it is
  // sent as the "ignore_eos" extension field, which servers that lack it ignore.
  bool ignore_eos = true;
};

}  // namespace xlserve::loadtest
