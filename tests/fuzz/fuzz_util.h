/* Shared by the fuzz targets: the readers take paths, so each input is
 * written to a file in a private folder first. A reader that ends the
 * process (SR_FAIL, exit) instead of returning an error is a finding: the
 * abort hook turns it into a crash with a stack trace. */
#ifndef SEMREP_FUZZ_UTIL_H
#define SEMREP_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "io/conf.h"

/* The target's work folder (made on the first call, removed at exit). */
const char *sr_fuzz_dir(void);
/* Writes size bytes to sr_fuzz_dir()/name; its path goes to path (len bytes). */
void sr_fuzz_file(const char *name, const uint8_t *data, size_t size, char *path, size_t len);
/* Empties sr_fuzz_dir(), e.g. of a reader's cache, so inputs stay independent. */
void sr_fuzz_clean(void);
/* Opens the data set c describes (a refusal is fine), and when it opens,
 * reads its first and last images (at most `floats` floats of pixels for
 * the two) and checks that every label names a class. */
void sr_fuzz_dataset(const sr_dataset_conf *c, size_t floats);
/* The conf's defaults (loaded once): what a reader is configured with. */
const semrep_conf *sr_fuzz_defaults(void);

#endif
