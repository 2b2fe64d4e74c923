/* Wall-clock seconds from a monotonic clock, for progress and benchmarks. */
#ifndef SEMREP_CORE_CLOCK_H
#define SEMREP_CORE_CLOCK_H

double sr_seconds(void);

#endif
