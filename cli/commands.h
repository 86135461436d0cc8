// The `xlserve` subcommands. Each takes its arguments (after the subcommand name), writes
// results to stdout and returns the process exit code; errors are one line on stderr.
#pragma once

#include <string>
#include <vector>

namespace xlserve::cli {

int RunGenerate(const std::vector<std::string>& args);
int RunTokenize(const std::vector<std::string>& args);
int RunDetokenize(const std::vector<std::string>& args);
int RunBench(const std::vector<std::string>& args);
int RunServe(const std::vector<std::string>& args);
int RunGateway(const std::vector<std::string>& args);
int RunHealth(const std::vector<std::string>& args);
int RunLoadtest(const std::vector<std::string>& args);

// Prints "xlserve <command>: error: <message>" and returns the exit code for errors.
int ReportError(const std::string& command, const std::string& message);

}  // namespace xlserve::cli
