// The gateway's reading of OpenAI request bodies: out-of-range numbers, wrongly typed fields
// and hostile session ids are 400s rather than wrapped or thrown, and chat templating is linear.
#include "gateway/openai_api.h"

#include <catch2/catch.hpp>
#include <string>

namespace xlserve::gateway {
namespace {

using nlohmann::json;

absl::StatusOr<CompletionCall> Completion(json body) {
  body["model"] = "m";
  if (!body.contains("prompt")) body["prompt"] = "x";
  return ParseCompletionCall(body, false, ChatTemplate{});
}

void ExpectBad(const absl::StatusOr<CompletionCall>& call, const std::string& field) {
  REQUIRE_FALSE(call.ok());
  CHECK(call.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(call.status().message()).find("'" + field + "'") != std::string::npos);
}

TEST_CASE("integers that do not fit are refused, not wrapped") {
  ExpectBad(Completion({{"max_tokens", 4294967297ULL}}), "max_tokens");
  ExpectBad(Completion({{"max_tokens", -1}}), "max_tokens");
  ExpectBad(Completion({{"max_tokens", 0}}), "max_tokens");
  ExpectBad(Completion({{"max_tokens", 1.5}}), "max_tokens");
  // Parsed non-negative numbers are unsigned in json: the lower bound applies to them too.
  ExpectBad(Completion(json::parse(R"({"max_tokens": 0})")), "max_tokens");
  ExpectBad(Completion(json::parse(R"({"n": 0})")), "n");
  ExpectBad(Completion({{"max_tokens", "16"}}), "max_tokens");
  ExpectBad(Completion({{"n", 4294967298ULL}}), "n");
  ExpectBad(Completion({{"n", 0}}), "n");
  ExpectBad(Completion({{"logprobs", 4294967297ULL}}), "logprobs");
  ExpectBad(Completion({{"prompt", json::array({1, 4294967652ULL})}}), "prompt");
  ExpectBad(Completion({{"prompt", json::array({1, -1})}}), "prompt");
  ExpectBad(Completion({{"seed", 1.5}}), "seed");
  ExpectBad(Completion({{"temperature", 1e300}}), "temperature");
  ExpectBad(Completion({{"top_p", "0.9"}}), "top_p");

  absl::StatusOr<CompletionCall> ok = Completion(
      {{"max_tokens", 2147483647}, {"n", 3}, {"prompt", json::array({0, 2147483647})}, {"seed", 18446744073709551615ULL}});
  REQUIRE(ok.ok());
  CHECK(ok->request.max_tokens() == 2147483647);
  CHECK(ok->request.n() == 3);
  CHECK(ok->request.prompt_token_ids(1) == 2147483647);
  CHECK(ok->request.seed() == 18446744073709551615ULL);
  absl::StatusOr<CompletionCall> negative_seed = Completion({{"seed", -1}});
  REQUIRE(negative_seed.ok());
  CHECK(negative_seed->request.seed() == 18446744073709551615ULL);
}

TEST_CASE("fields of the wrong type are 400s") {
  ExpectBad(Completion({{"stream", true}, {"stream_options", {{"include_usage", "yes"}}}}), "include_usage");
  ExpectBad(Completion({{"stream_options", "yes"}}), "stream_options");
  ExpectBad(Completion({{"ignore_eos", "yes"}}), "ignore_eos");
  ExpectBad(Completion({{"user", 7}}), "user");
  ExpectBad(Completion({{"stream", "true"}}), "stream");
  ExpectBad(Completion({{"prompt", json::array({""})}}), "prompt");
  ExpectBad(ParseCompletionCall({{"messages", json::array({{{"role", "user"}, {"content", "x"}}})}, {"logprobs", "yes"}},
                                true, ChatTemplate{}),
            "logprobs");
  absl::StatusOr<CompletionCall> ok =
      Completion({{"stream", true}, {"stream_options", {{"include_usage", true}}}, {"ignore_eos", true}});
  REQUIRE(ok.ok());
  CHECK(ok->include_usage);
  CHECK(ok->request.ignore_eos());
}

TEST_CASE("session ids with control characters are refused") {
  ExpectBad(Completion({{"session_id", "a\nINFO forged line"}}), "session_id");
  ExpectBad(Completion({{"session_id", "\x1b[31mred"}}), "session_id");
  ExpectBad(Completion({{"session_id", std::string("a\0b", 3)}}), "session_id");
  ExpectBad(Completion({{"session_id", std::string(201, 'a')}}), "session_id");
  absl::StatusOr<CompletionCall> ok = Completion({{"session_id", "chat-1 é"}});
  REQUIRE(ok.ok());
  CHECK(ok->request.session_id() == "chat-1 é");
  CHECK(ok->affinity_key == "chat-1 é");
}

TEST_CASE("chat templating never substitutes inside substituted text") {
  const std::string role = std::string(1000, 'r') + "{content}{content}{role}";
  const std::string content(100000, 'c');
  json body = {{"messages", json::array({{{"role", role}, {"content", content}}})}};
  absl::StatusOr<CompletionCall> call = ParseCompletionCall(body, true, ChatTemplate{});
  REQUIRE(call.ok());
  CHECK(call->request.prompt() == "<|" + role + "|>\n" + content + "\n<|assistant|>\n");
}

TEST_CASE("chat templates of the wrong shape are errors") {
  CHECK_FALSE(ParseChatTemplate(json::array(), "t").ok());
  CHECK_FALSE(ParseChatTemplate({{"message", 3}}, "t").ok());
  absl::StatusOr<ChatTemplate> t = ParseChatTemplate({{"message", "{role}: {content}\n"}}, "t");
  REQUIRE(t.ok());
  CHECK(t->message == "{role}: {content}\n");
  CHECK(t->generation_prompt == ChatTemplate{}.generation_prompt);
}

}  // namespace
}  // namespace xlserve::gateway
