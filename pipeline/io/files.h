/* File-system helpers shared by io/. */
#ifndef SEMREP_IO_FILES_H
#define SEMREP_IO_FILES_H

#include <stddef.h>

/* mkdir -p; 0, or -1 with the reason in err. */
int sr_make_dirs(const char *path, char *err, size_t errlen);
/* rm -rf (core/check.h's sr_remove_path); 0, or -1 when something could not be removed. */
int sr_remove_tree(const char *path);
/* Size in bytes and modification time (seconds) of a file; -1 if it cannot be read. */
int sr_file_stamp(const char *path, long long *size, long long *mtime);

#endif
