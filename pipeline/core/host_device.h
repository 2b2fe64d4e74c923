/* SR_HOST_DEVICE marks a static inline function that both backends compile:
 * host code in C, host and device code in CUDA. */
#ifndef SEMREP_CORE_HOST_DEVICE_H
#define SEMREP_CORE_HOST_DEVICE_H

#ifdef __CUDACC__
#define SR_HOST_DEVICE __host__ __device__
#else
#define SR_HOST_DEVICE
#endif

#endif
