/* File-system helpers shared by io/. */
#ifndef SEMREP_IO_FILES_H
#define SEMREP_IO_FILES_H

#include <stddef.h>

/* mkdir -p; 0, or -1 with the reason in err. */
int sr_make_dirs(const char *path, char *err, size_t errlen);
/* rm -rf (core/check.h's sr_remove_path); 0, or -1 when something could not be removed. */
int sr_remove_tree(const char *path);
/* What identifies a file's content without reading it: size, modification
 * and change times to the nanosecond, and inode. A file rewritten with the
 * same size and whole-second time still changes its nanoseconds, change time
 * or inode. Not the device: NFS numbers one mount differently on each node,
 * and a SLURM chain moves between nodes. */
typedef struct {
    long long size, mtime_s, mtime_ns, ctime_s, ctime_ns, inode;
} sr_file_id;
/* 0, or -1 (errno set) when the file cannot be read. */
int sr_file_stamp(const char *path, sr_file_id *id);
struct stat;
sr_file_id sr_file_id_of(const struct stat *st);

/* Only regular files are read as data: a FIFO would block the reader for
 * ever, a device or socket is no data set. 0 when path is a regular file;
 * else -1 with one line in err naming the file, `what` (the conf key or the
 * role, e.g. "dataset.images") and its kind. For readers that open by name
 * themselves (libnetcdf); a file swapped for a FIFO between the check and
 * their open is a race left open. */
int sr_check_regular(const char *path, const char *what, char *err, size_t errlen);
/* Opens a regular file for reading without ever blocking on a FIFO (opened
 * non-blocking, checked on the descriptor, then made blocking again): the
 * descriptor, or -1 with one line in err as sr_check_regular. */
int sr_open_regular(const char *path, const char *what, char *err, size_t errlen);

#endif
