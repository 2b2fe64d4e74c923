/* The semrep subcommands. Each returns the process exit status
 * (docs/cli.md): 0 done, 1 failed at run time, 2 bad command line. */
#ifndef SEMREP_CLI_COMMANDS_H
#define SEMREP_CLI_COMMANDS_H

#include "comm/comm.h"

enum { SR_EXIT_OK = 0, SR_EXIT_FAILED = 1, SR_EXIT_USAGE = 2 };

int sr_cmd_bench(int argc, char **argv, semrep_comm *comm);
void sr_cmd_bench_help(void);

#endif
