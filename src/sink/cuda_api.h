/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The few CUDA driver API types, constants and entry points weightlift uses, declared here
 * from NVIDIA's driver API documentation so that the build needs no CUDA toolkit (CI machines
 * have none) and the library never links libcuda: the driver is loaded at run time
 * (cuda_drv.c). The fake driver (fake/fake_cuda.c) implements exactly these, under the same
 * exported names, so the values here are its ABI too. Only ABI-stable entry points are used:
 * the "_v2" symbols where the driver has them (cuda.h maps the plain names to those).
 */
#ifndef WLIFT_SINK_CUDA_API_H
#define WLIFT_SINK_CUDA_API_H

#include <stddef.h>
#include <stdint.h>

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long CUmemGenericAllocationHandle;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUarray_st *CUarray;

/* cuMemcpy2DAsync's parameters (CUDA_MEMCPY2D_v2). */
typedef struct {
	size_t srcXInBytes, srcY;
	int srcMemoryType; /* CU_MEMORYTYPE_HOST, _DEVICE */
	const void *srcHost;
	CUdeviceptr srcDevice;
	CUarray srcArray;
	size_t srcPitch;
	size_t dstXInBytes, dstY;
	int dstMemoryType;
	void *dstHost;
	CUdeviceptr dstDevice;
	CUarray dstArray;
	size_t dstPitch;
	size_t WidthInBytes, Height;
} CUDA_MEMCPY2D;

/* Virtual memory management (cuMemCreate, cuMemMap, ...). */
typedef struct {
	int type; /* CU_MEM_LOCATION_TYPE_DEVICE */
	int id;	  /* the device ordinal */
} CUmemLocation;

typedef struct {
	int type;		  /* CU_MEM_ALLOCATION_TYPE_PINNED */
	int requestedHandleTypes; /* 0: none */
	CUmemLocation location;
	void *win32HandleMetaData;
	struct {
		unsigned char compressionType;
		unsigned char gpuDirectRDMACapable;
		unsigned short usage;
		unsigned char reserved[4];
	} allocFlags;
} CUmemAllocationProp;

typedef struct {
	CUmemLocation location;
	int flags; /* CU_MEM_ACCESS_FLAGS_PROT_READWRITE */
} CUmemAccessDesc;

/* CUresult values (cuda.h, enum cudaError_enum). */
#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_OUT_OF_MEMORY 2
#define CUDA_ERROR_NOT_INITIALIZED 3
#define CUDA_ERROR_NO_DEVICE 100
#define CUDA_ERROR_INVALID_IMAGE 200
#define CUDA_ERROR_INVALID_PTX 218
#define CUDA_ERROR_UNSUPPORTED_PTX_VERSION 222
#define CUDA_ERROR_INVALID_DEVICE 101
#define CUDA_ERROR_INVALID_CONTEXT 201
#define CUDA_ERROR_INVALID_HANDLE 400
#define CUDA_ERROR_NOT_FOUND 500
#define CUDA_ERROR_NOT_READY 600
#define CUDA_ERROR_ILLEGAL_ADDRESS 700
#define CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED 712
#define CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED 713
#define CUDA_ERROR_LAUNCH_FAILED 719
#define CUDA_ERROR_NOT_SUPPORTED 801
#define CUDA_ERROR_UNKNOWN 999

/* Flags. */
#define CU_STREAM_NON_BLOCKING 0x1
#define CU_EVENT_DISABLE_TIMING 0x2
#define CU_MEMHOSTREGISTER_PORTABLE 0x1
#define CU_MEMHOSTALLOC_PORTABLE 0x1
#define CU_DEVICE_ATTRIBUTE_PCI_BUS_ID 33
#define CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID 34
#define CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID 50
#define CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED 102
#define CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED 110
#define CU_MEM_LOCATION_TYPE_DEVICE 0x1
#define CU_MEM_ALLOCATION_TYPE_PINNED 0x1
#define CU_MEM_ACCESS_FLAGS_PROT_READWRITE 0x3
#define CU_MEM_ALLOC_GRANULARITY_MINIMUM 0x0
#define CU_MEM_ALLOC_GRANULARITY_RECOMMENDED 0x1
#define CU_MEMORYTYPE_HOST 0x1
#define CU_MEMORYTYPE_DEVICE 0x2

/* Entry points, in the order cuda_drv.c resolves them: X(field, exported symbol, arguments);
 * every one returns CUresult. */
#define WLIFT_CUDA_ENTRY_POINTS(X)                                                           \
	X(Init, "cuInit", (unsigned flags))                                                   \
	X(DriverGetVersion, "cuDriverGetVersion", (int *v))                                   \
	X(GetErrorName, "cuGetErrorName", (CUresult e, const char **s))                       \
	X(GetErrorString, "cuGetErrorString", (CUresult e, const char **s))                   \
	X(DeviceGetCount, "cuDeviceGetCount", (int *n))                                       \
	X(DeviceGet, "cuDeviceGet", (CUdevice * dev, int ordinal))                            \
	X(DeviceGetName, "cuDeviceGetName", (char *name, int len, CUdevice dev))              \
	X(DeviceGetAttribute, "cuDeviceGetAttribute", (int *v, int attr, CUdevice dev))       \
	X(DeviceTotalMem, "cuDeviceTotalMem_v2", (size_t * bytes, CUdevice dev))              \
	X(PrimaryCtxRetain, "cuDevicePrimaryCtxRetain", (CUcontext * ctx, CUdevice dev))      \
	X(PrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", (CUdevice dev))                  \
	X(CtxSetCurrent, "cuCtxSetCurrent", (CUcontext ctx))                                  \
	X(CtxPushCurrent, "cuCtxPushCurrent_v2", (CUcontext ctx))                             \
	X(CtxPopCurrent, "cuCtxPopCurrent_v2", (CUcontext * ctx))                             \
	X(MemGetInfo, "cuMemGetInfo_v2", (size_t * free_b, size_t * total))                   \
	X(MemAlloc, "cuMemAlloc_v2", (CUdeviceptr * p, size_t bytes))                         \
	X(MemFree, "cuMemFree_v2", (CUdeviceptr p))                                           \
	X(MemHostRegister, "cuMemHostRegister_v2", (void *p, size_t bytes, unsigned flags))   \
	X(MemHostUnregister, "cuMemHostUnregister", (void *p))                                \
	X(MemHostAlloc, "cuMemHostAlloc", (void **p, size_t bytes, unsigned flags))           \
	X(MemFreeHost, "cuMemFreeHost", (void *p))                                            \
	X(MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2",                                            \
	  (CUdeviceptr dst, const void *src, size_t bytes, CUstream s))                       \
	X(MemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2",                                            \
	  (CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s))                       \
	X(MemcpyDtoH, "cuMemcpyDtoH_v2", (void *dst, CUdeviceptr src, size_t bytes))          \
	X(StreamCreate, "cuStreamCreate", (CUstream * s, unsigned flags))                     \
	X(StreamDestroy, "cuStreamDestroy_v2", (CUstream s))                                  \
	X(StreamSynchronize, "cuStreamSynchronize", (CUstream s))                             \
	X(EventCreate, "cuEventCreate", (CUevent * e, unsigned flags))                        \
	X(EventRecord, "cuEventRecord", (CUevent e, CUstream s))                              \
	X(EventQuery, "cuEventQuery", (CUevent e))                                            \
	X(EventSynchronize, "cuEventSynchronize", (CUevent e))                                \
	X(EventDestroy, "cuEventDestroy_v2", (CUevent e))

/* Entry points the sink can do without (NULL when the driver lacks them): virtual memory
 * management, used when the device supports it, else one cuMemAlloc per load; the modules
 * and launches of the conversion kernels (without them: device conversion unsupported); the
 * 2D copy of strided shard blocks (without it: staged gather by device moves). */
#define WLIFT_CUDA_OPTIONAL_ENTRY_POINTS(X)                                                  \
	X(MemGetAllocationGranularity, "cuMemGetAllocationGranularity",                       \
	  (size_t * g, const CUmemAllocationProp *prop, int option))                          \
	X(MemAddressReserve, "cuMemAddressReserve",                                           \
	  (CUdeviceptr * p, size_t bytes, size_t align, CUdeviceptr addr,                     \
	   unsigned long long flags))                                                         \
	X(MemAddressFree, "cuMemAddressFree", (CUdeviceptr p, size_t bytes))                  \
	X(MemCreate, "cuMemCreate",                                                           \
	  (CUmemGenericAllocationHandle * h, size_t bytes, const CUmemAllocationProp *prop,   \
	   unsigned long long flags))                                                         \
	X(MemRelease, "cuMemRelease", (CUmemGenericAllocationHandle h))                       \
	X(MemMap, "cuMemMap",                                                                 \
	  (CUdeviceptr p, size_t bytes, size_t offset, CUmemGenericAllocationHandle h,        \
	   unsigned long long flags))                                                         \
	X(MemUnmap, "cuMemUnmap", (CUdeviceptr p, size_t bytes))                              \
	X(MemSetAccess, "cuMemSetAccess",                                                     \
	  (CUdeviceptr p, size_t bytes, const CUmemAccessDesc *desc, size_t count))           \
	X(ModuleLoadData, "cuModuleLoadData", (CUmodule * m, const void *image))              \
	X(ModuleUnload, "cuModuleUnload", (CUmodule m))                                       \
	X(ModuleGetFunction, "cuModuleGetFunction",                                           \
	  (CUfunction * f, CUmodule m, const char *name))                                     \
	X(LaunchKernel, "cuLaunchKernel",                                                     \
	  (CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,     \
	   unsigned bz, unsigned shared, CUstream s, void **params, void **extra))            \
	X(Memcpy2DAsync, "cuMemcpy2DAsync_v2", (const CUDA_MEMCPY2D *p, CUstream s))

#endif
