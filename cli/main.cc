// xlserve: command-line entry point; dispatches to one subcommand.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

constexpr const char* kUsage =
    "usage: xlserve <command> [flags]\n"
    "\n"
    "xlserve serves recurrent xLSTM language models.\n"
    "\n"
    "commands:\n"
    "  serve        serve a model over gRPC with continuous batching\n"
    "  gateway      OpenAI-compatible REST gateway in front of serve replicas\n"
    "  health       check a server (gRPC health) or a gateway (/health)\n"
    "  generate     generate text from a prompt with a local model\n"
    "  tokenize     turn text into token ids with a tokenizer.json\n"
    "  detokenize   turn token ids back into text\n"
    "  bench        measure decoding speed (--shape 7b: CUDA backend vs the HBM floor;\n"
    "               --speculative: self-speculation on real text)\n"
    "  loadtest     load-test a server (gRPC) or gateway (REST): latency, throughput, goodput\n"
    "\n"
    "Run `xlserve <command> --help` for a command's flags.\n";

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_default_logger(spdlog::stderr_color_mt("xlserve"));
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "serve") return xlserve::cli::RunServe(args);
  if (command == "gateway") return xlserve::cli::RunGateway(args);
  if (command == "health") return xlserve::cli::RunHealth(args);
  if (command == "generate") return xlserve::cli::RunGenerate(args);
  if (command == "tokenize") return xlserve::cli::RunTokenize(args);
  if (command == "detokenize") return xlserve::cli::RunDetokenize(args);
  if (command == "bench") return xlserve::cli::RunBench(args);
  if (command == "loadtest") return xlserve::cli::RunLoadtest(args);
  std::fprintf(stderr, "xlserve: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return 2;
}
