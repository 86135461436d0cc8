#include "loadtest/sse_parser.h"

namespace xlserve::loadtest {

void SseParser::Feed(std::string_view bytes) {
  partial_line_.append(bytes);
  size_t start = 0;
  for (size_t nl = partial_line_.find('\n'); nl != std::string::npos; nl = partial_line_.find('\n', start)) {
    std::string_view line(partial_line_.data() + start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    Line(line);
    start = nl + 1;
  }
  partial_line_.erase(0, start);
}

void SseParser::Line(std::string_view line) {
  if (line.empty()) {
    if (has_data_) on_data_(data_);
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line.substr(0, 5) != "data:") return;  // comments, event names and ids do not matter here
  line.remove_prefix(5);
  if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  if (has_data_) data_ += '\n';
  data_.append(line);
  has_data_ = true;
}

}  // namespace xlserve::loadtest
