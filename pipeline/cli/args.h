/* The command line after the command word: positional arguments, any number
 * of `--set KEY=VALUE`, and the command's own `--name value` options. */
#ifndef SEMREP_CLI_ARGS_H
#define SEMREP_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>

#define SR_ARGS_MAX 64

typedef struct {
    int npositional, nsets, nopts, nflags;
    char *positional[SR_ARGS_MAX];
    char *sets[SR_ARGS_MAX];
    const char *opt_names[SR_ARGS_MAX];
    char *opt_values[SR_ARGS_MAX];
    const char *flags[SR_ARGS_MAX];
    bool help;
} sr_args;

/* options: the names this command takes ("--batch", ...), NULL-terminated;
 * a flag, which takes no value, is listed with a "!" after its name ("--adopt!").
 * -1 with a one-line reason in err for an unknown option or a missing value. */
int sr_args_parse(int argc, char **argv, const char *const *options, sr_args *args, char *err, size_t errlen);
/* The value of an option, or NULL when absent. */
const char *sr_args_get(const sr_args *args, const char *name);
/* The flag was given. */
bool sr_args_flag(const sr_args *args, const char *name);
/* An integer or number option; -1 with err naming it when it is not one. */
int sr_args_int(const sr_args *args, const char *name, int fallback, int *out, char *err, size_t errlen);
int sr_args_double(const sr_args *args, const char *name, double fallback, double *out, char *err, size_t errlen);

#endif
