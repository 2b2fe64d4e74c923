#include "cli/args.h"

#include "core/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* options lists a flag, which takes no value, as "--name!" */
static bool is_flag(const char *const *options, const char *arg)
{
    const size_t n = strlen(arg);
    for (const char *const *o = options; o && *o; o++)
        if (!strncmp(*o, arg, n) && !strcmp(*o + n, "!")) return true;
    return false;
}

bool sr_args_flag(const sr_args *a, const char *name)
{
    for (int i = 0; i < a->nflags; i++)
        if (!strcmp(a->flags[i], name)) return true;
    return false;
}

int sr_args_parse(int argc, char **argv, const char *const *options, sr_args *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            a->help = true;
            continue;
        }
        if (strncmp(arg, "--", 2)) {
            if (a->npositional == SR_ARGS_MAX) return sr_report(err, errlen, "too many arguments");
            a->positional[a->npositional++] = arg;
            continue;
        }
        if (is_flag(options, arg)) {
            if (a->nflags == SR_ARGS_MAX) return sr_report(err, errlen, "too many options");
            a->flags[a->nflags++] = arg;
            continue;
        }
        const char *const *o = options;
        while (o && *o && strcmp(*o, arg)) o++;
        if (strcmp(arg, "--set") && (!o || !*o)) return sr_report(err, errlen, "unknown option %s", arg);
        if (i + 1 >= argc) return sr_report(err, errlen, "%s needs a value", arg);
        if (!strcmp(arg, "--set")) {
            if (a->nsets == SR_ARGS_MAX) return sr_report(err, errlen, "too many --set");
            a->sets[a->nsets++] = argv[++i];
            continue;
        }
        if (a->nopts == SR_ARGS_MAX) return sr_report(err, errlen, "too many options");
        a->opt_names[a->nopts] = *o;
        a->opt_values[a->nopts++] = argv[++i];
    }
    return 0;
}

const char *sr_args_get(const sr_args *a, const char *name)
{
    const char *value = NULL;
    for (int i = 0; i < a->nopts; i++)
        if (!strcmp(a->opt_names[i], name)) value = a->opt_values[i]; /* the last one wins */
    return value;
}

int sr_args_double(const sr_args *a, const char *name, double fallback, double *out, char *err, size_t errlen)
{
    const char *v = sr_args_get(a, name);
    char *end = NULL;
    *out = v ? strtod(v, &end) : fallback;
    if (v && (end == v || *end)) return sr_report(err, errlen, "%s %s is not a number", name, v);
    return 0;
}

int sr_args_int(const sr_args *a, const char *name, int fallback, int *out, char *err, size_t errlen)
{
    const char *v = sr_args_get(a, name);
    char *end = NULL;
    const long value = v ? strtol(v, &end, 10) : fallback;
    if (v && (end == v || *end)) return sr_report(err, errlen, "%s %s is not an integer", name, v);
    if (v && (value < -2147483647L || value > 2147483647L))
        return sr_report(err, errlen, "%s %s is out of range", name, v);
    *out = (int)value;
    return 0;
}
