/* The manifest of a PNG folder (docs/datasets.md): every PNG file in sorted
 * order with its size, time, class and verdict (valid, or the reason it is
 * not). Built once, in parallel over the ranks (stages/data.c), kept as a
 * text file in the run's output folder and reused while the folder is
 * unchanged; when files are added or changed, only those are checked again.
 * Bad images are decided here, before any index is handed out. */
#ifndef SEMREP_IO_MANIFEST_H
#define SEMREP_IO_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>

#include "io/dataset.h"
#include "io/files.h"

#define SR_MANIFEST_FORMAT "semrep-manifest"
#define SR_MANIFEST_VERSION 2
#define SR_REASON_MAX 160

typedef struct {
    char name[SR_NAME_MAX];     /* path relative to the folder, raw bytes (escaped only in the file) */
    sr_file_id id;              /* size, times, inode */
    int cls;                    /* class, -1 when unlabelled */
    bool checked;               /* verdict known */
    char reason[SR_REASON_MAX]; /* "" when valid */
} sr_manifest_entry;

typedef struct {
    char folder[SR_PATH_MAX];
    long max_pixels;            /* the limit the verdicts were made under */
    int nclasses;
    char (*class_names)[SR_CLASS_NAME_MAX];
    long count;
    sr_manifest_entry *entries; /* sorted by name, byte order */
} sr_manifest;

/* Lists a folder's PNG files (by extension, any case), sorted. A folder
 * whose top level holds only sub-folders is labelled: each sub-folder is a
 * class (sorted names), and every PNG below it has that class. Otherwise
 * every PNG below the folder is unlabelled. An empty class folder, or a
 * folder without PNG files, is an error. */
int sr_manifest_list(const char *folder, long max_pixels, sr_manifest *m, char *err, size_t errlen);
/* Takes the verdicts of old's entries that are unchanged (name, size,
 * modification and change times to the nanosecond, inode; same folder and
 * max_pixels); returns how many entries remain unchecked. */
long sr_manifest_reuse(sr_manifest *m, const sr_manifest *old);
/* Decodes one file fully (scratch: channels * size * size floats) and sets
 * its verdict. */
void sr_manifest_check(const sr_manifest *m, sr_manifest_entry *e, int channels, int size, float *scratch);
int sr_manifest_write(const char *path, const sr_manifest *m, char *err, size_t errlen);
/* -1 when the file is absent or not a manifest of this version (callers
 * then rebuild). Names, the folder and class names are written with C-style
 * escapes for control characters and backslashes (docs/datasets.md), so a
 * tab or line break in a file name keeps the manifest whole. */
int sr_manifest_read(const char *path, sr_manifest *m, char *err, size_t errlen);
void sr_manifest_free(sr_manifest *m);
/* A name as the manifest writes it, one field of one line: backslash, tab,
 * line breaks and every other control byte become C-style escapes (\\, \t,
 * \n, \r, \xHH); other bytes, UTF-8 included, stay. Also for messages,
 * which are one line. out needs 4 bytes per byte of name, and one more. */
void sr_escape_name(const char *name, char *out, size_t len);

/* Where a folder's manifest lives in a run's output folder. */
void sr_manifest_path(const char *work_dir, const char *folder, char *out, size_t len);

#endif
