#include "loadtest/code_text.h"

#include <array>
#include <string_view>

namespace xlserve::loadtest {
namespace {

constexpr std::array<std::string_view, 64> kWords = {
    "def",    "return", "if",     "else",    "for",    "in",      "while",  "import", "from",   "class",
    "self",   "None",   "True",   "False",   "and",    "or",      "not",    "with",   "as",     "try",
    "except", "raise",  "yield",  "lambda",  "print",  "len",     "range",  "list",   "dict",   "str",
    "int",    "value",  "result", "items",   "key",    "data",    "path",   "name",   "count",  "index",
    "node",   "config", "args",   "kwargs",  "=",      "==",      "+",      "-",      "*",      "(",
    ")",      "[",      "]",      ":",       ",",      ".",       "0",      "1",      "x",      "y",
    "i",      "os",     "sys",    "append",
};
// A new line roughly every this many words keeps lines short, as in real code.
constexpr int kWordsPerLine = 8;

}  // namespace

std::string RandomCodeText(int words, std::mt19937_64& rng) {
  std::uniform_int_distribution<size_t> pick(0, kWords.size() - 1);
  std::uniform_int_distribution<int> line_break(0, kWordsPerLine - 1);
  std::uniform_int_distribution<int> indent(0, 2);
  std::string text;
  for (int i = 0; i < words; ++i) {
    if (i > 0) {
      if (line_break(rng) == 0) {
        text += '\n';
        text.append(4 * indent(rng), ' ');
      } else {
        text += ' ';
      }
    }
    text += kWords[pick(rng)];
  }
  return text;
}

}  // namespace xlserve::loadtest
