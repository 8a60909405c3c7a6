#include "ctl/table.h"

namespace up::ctl {

size_t text_width(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++w;
  return w;
}

namespace {
// Control characters from a daemon-supplied field must not reach the terminal as such.
std::string printable(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f)
      out.push_back('?');
    else
      out.push_back(static_cast<char>(c));
  }
  return out;
}
}  // namespace

void Table::print(FILE* out) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (row.size() > widths.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i)
      if (text_width(row[i]) > widths[i]) widths[i] = text_width(row[i]);
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      std::string cell = printable(row[i]);
      line += cell;
      if (i + 1 < row.size()) line.append(widths[i] - text_width(cell) + 3, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    line.push_back('\n');
    fputs(line.c_str(), out);
  }
}

}  // namespace up::ctl
