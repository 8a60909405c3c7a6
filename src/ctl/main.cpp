// uringproxyctl: the command-line client of the daemon's control socket (docs/uringproxyctl.md).
#include "ctl/cli.h"

int main(int argc, char** argv) { return up::ctl::run(argc, argv); }
