/*
 * For the Wine test run in .ci/run only; never built into or shipped with ipcq.
 *
 * Rust's standard library for Windows takes its random bytes (the seed of HashMap's
 * hasher, among others) from ProcessPrng in bcryptprimitives.dll, which every supported
 * Windows has. Wine 8.0, which Debian ships, does not export it, so a Rust program for
 * Windows stops at its first HashMap under that Wine. This DLL, put next to the test
 * executables, exports ProcessPrng and forwards to SystemFunction036 (RtlGenRandom),
 * which Wine has.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
