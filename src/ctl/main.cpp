// uringproxyctl: the command-line client of the daemon's control socket (DESIGN 2.6).
#include "ctl/cli.h"

int main(int argc, char** argv) { return up::ctl::run(argc, argv); }
