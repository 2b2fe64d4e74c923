/* The semrep subcommands. Each returns the process exit status
 * (docs/cli.md): 0 done, 1 failed at run time, 2 bad command line, 3 `run`
 * stopped with the training unfinished (run it again to continue). */
#ifndef SEMREP_CLI_COMMANDS_H
#define SEMREP_CLI_COMMANDS_H

#include "cli/args.h"
#include "comm/comm.h"
#include "io/conf.h"

enum { SR_EXIT_OK = 0, SR_EXIT_FAILED = 1, SR_EXIT_USAGE = 2, SR_EXIT_UNFINISHED = 3 };

/* Each command: argv[0] is the command word. */
int sr_cmd_run(int argc, char **argv, semrep_comm *comm);
int sr_cmd_stage(int argc, char **argv, semrep_comm *comm);
int sr_cmd_bench(int argc, char **argv, semrep_comm *comm);
int sr_cmd_info(int argc, char **argv, semrep_comm *comm);

/* Shared by the commands. */
/* Parses the command's arguments (options: its `--name value` options,
 * positional_min..max: how many other arguments it takes); on --help prints
 * usage and returns 0 with *done set; on a bad line prints the reason and
 * usage and returns 2. */
int sr_cli_args(int argc, char **argv, const char *const *options, int positional_min, int positional_max,
                const char *usage, const semrep_comm *comm, sr_args *args, int *done);
/* Loads the conf at path (NULL: defaults) with the --set overrides; 0 or 1. */
int sr_cli_conf(const char *path, const sr_args *args, const semrep_comm *comm, semrep_conf *conf);

#endif
