// Reading a password from stdin or from the terminal with echo off.
#include "ctl/password.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

namespace up::ctl {
namespace {

// Reads one line from fd (byte by byte: nothing after the newline is consumed). Returns false on
// a read error; `saw_any` tells an empty line from end of input.
bool read_line(int fd, std::string& out, bool& saw_any) {
  out.clear();
  saw_any = false;
  char c;
  for (;;) {
    ssize_t n = read(fd, &c, 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) break;
    saw_any = true;
    if (c == '\n') break;
    out.push_back(c);
    if (out.size() > 4096) return false;
  }
  if (!out.empty() && out.back() == '\r') out.pop_back();
  return true;
}

bool prompt(const char* text, std::string& out) {
  fputs(text, stderr);
  fflush(stderr);
  termios old{};
  bool restore = tcgetattr(STDIN_FILENO, &old) == 0;
  if (restore) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ECHONL;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  bool saw_any = false;
  bool ok = read_line(STDIN_FILENO, out, saw_any);
  if (restore) tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
  return ok && saw_any;
}

}  // namespace

void wipe(std::string& s) {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

bool read_password(bool from_stdin, bool may_prompt, const std::string& what, std::string& out,
                   std::string& error) {
  out.clear();
  if (from_stdin) {
    bool saw_any = false;
    errno = 0;
    if (!read_line(STDIN_FILENO, out, saw_any)) {
      wipe(out);
      error = "--password-stdin: cannot read the password from stdin (" +
              std::string(errno ? strerror(errno) : "line longer than 4096 bytes") + ")";
      return false;
    }
    if (out.empty()) {
      error = "--password-stdin: the password is empty (give one line on stdin)";
      return false;
    }
    return true;
  }
  if (!may_prompt || !isatty(STDIN_FILENO)) {
    error = "a password is needed for " + what +
            ": pass --password-stdin and give it on stdin (it is never taken from the "
            "command line)";
    return false;
  }
  std::string again;
  if (!prompt("Password: ", out) || !prompt("Retype password: ", again)) {
    wipe(out);
    wipe(again);
    error = "no password read from the terminal";
    return false;
  }
  bool same = out == again;
  wipe(again);
  if (!same) {
    wipe(out);
    error = "the passwords do not match";
    return false;
  }
  if (out.empty()) {
    error = "the password is empty";
    return false;
  }
  return true;
}

}  // namespace up::ctl
