/* An output folder is semrep's alone: the ownership record.
 *
 * OUTPUT/.semrep-owned lists, one a line, the paths (relative to OUTPUT) of
 * the files semrep wrote there. A run overwrites or deletes a file only when
 * the record lists it; any other file of the same name is refused by name.
 * Writers change the record under flock(OUTPUT/.semrep-owned.lock) and
 * replace it by rename, so concurrent ranks and SLURM array tasks may
 * register files in the same folder; readers need no lock.
 * docs/usage.md states the policy. */
#ifndef SEMREP_IO_OUTDIR_H
#define SEMREP_IO_OUTDIR_H

#include <stdbool.h>
#include <stddef.h>

#define SR_OUTDIR_RECORD ".semrep-owned"

/* At the start of a run or stage (one process): makes the folder if it must
 * and takes it as semrep's. Refused, with the reason in err (-1): an output
 * folder equal to or inside one of data_dirs (the PNG folders it reads;
 * NULL or "" entries are skipped), or a non-empty folder with neither the
 * record nor semrep's outputs of an older run unless adopt is set. An older
 * semrep folder without a record is adopted for semrep's own files only. */
int sr_outdir_claim(const char *dir, bool adopt, const char *const *data_dirs, int ndata, char *err, size_t errlen);

/* The record lists rel. */
bool sr_outdir_owns(const char *dir, const char *rel);
/* semrep may write dir/rel: it is absent or owned; else -1 naming it in err. */
int sr_outdir_check(const char *dir, const char *rel, char *err, size_t errlen);
/* Adds the n paths to the record (those already there are kept once). */
void sr_outdir_register(const char *dir, const char *const *rels, size_t n);
/* sr_commit_file(tmp, dir/rel) and register rel; dies naming dir/rel when a
 * file that semrep did not write is there. */
void sr_outdir_commit(const char *tmp, const char *dir, const char *rel);
/* Removes the owned files whose path starts with prefix and is not one of
 * keep, and unregisters them; files semrep did not write are never touched.
 * Returns how many it removed. */
int sr_outdir_prune(const char *dir, const char *prefix, const char *const *keep, size_t nkeep);
/* Replaces the folder dir/sub by the complete folder from (a temporary
 * folder of the caller's, on the same file system): each file of from takes
 * its place under dir/sub and is registered, then the owned files of dir/sub
 * that from does not have are removed; files semrep did not write stay.
 * -1, with nothing moved, when one of from's names is such a file. */
int sr_outdir_replace(const char *dir, const char *sub, const char *from, char *err, size_t errlen);

#endif
