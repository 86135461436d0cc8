// SseParser: splits a Server-Sent Events byte stream into events' data payloads, whatever
// the network's chunking (an event may arrive in pieces or several per read).
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace xlserve::loadtest {

class SseParser {
 public:
  // Called once per complete event with its data (several `data:` lines joined by '\n').
  // Events without data lines (comments, keep-alives) are not reported.
  using OnData = std::function<void(const std::string& data)>;

  explicit SseParser(OnData on_data) : on_data_(std::move(on_data)) {}

  // Feeds the next bytes. Lines end in "\n" or "\r\n"; a blank line ends an event.
  void Feed(std::string_view bytes);

 private:
  void Line(std::string_view line);

  OnData on_data_;
  std::string partial_line_;
  std::string data_;
  bool has_data_ = false;
};

}  // namespace xlserve::loadtest
