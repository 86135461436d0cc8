// Chat templating on arbitrary templates and messages, against a reference renderer written
// the obvious way: the gateway's output must equal it, so its size is linear in the inputs (a
// placeholder inside substituted text is never expanded again).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "gateway/openai_api.h"

namespace {

std::string Reference(const std::string& tmpl, const std::string& role, const std::string& content) {
  std::string out;
  size_t at = 0;
  for (;;) {
    const size_t r = tmpl.find("{role}", at), c = tmpl.find("{content}", at);
    const size_t next = std::min(r, c);
    if (next == std::string::npos) return out + tmpl.substr(at);
    out += tmpl.substr(at, next - at);
    out += next == r ? role : content;
    at = next + (next == r ? 6 : 9);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  xlserve::gateway::ChatTemplate tmpl;
  tmpl.message = in.ConsumeRandomLengthString(256);
  tmpl.generation_prompt = in.ConsumeRandomLengthString(64);
  nlohmann::json messages = nlohmann::json::array();
  std::string expected;
  while (in.remaining_bytes() > 0 && messages.size() < 16) {
    const std::string role = in.ConsumeRandomLengthString(256);
    const std::string content = in.ConsumeRandomLengthString(1024);
    messages.push_back({{"role", role}, {"content", content}});
    expected += Reference(tmpl.message, role, content);
  }
  if (messages.empty()) return 0;
  absl::StatusOr<xlserve::gateway::CompletionCall> call =
      xlserve::gateway::ParseCompletionCall({{"messages", messages}}, true, tmpl);
  if (!call.ok()) return 0;  // e.g. text that is not UTF-8 cannot travel in JSON
  if (call->request.prompt() != expected + tmpl.generation_prompt) std::abort();
  // The template itself also arrives as JSON (chat_template.json).
  absl::StatusOr<xlserve::gateway::ChatTemplate> parsed = xlserve::gateway::ParseChatTemplate(
      {{"message", tmpl.message}, {"generation_prompt", tmpl.generation_prompt}}, "fuzz");
  if (!parsed.ok() || parsed->message != tmpl.message) std::abort();
  return 0;
}
