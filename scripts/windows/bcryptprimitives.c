/*
 * Stand-in for Windows' bcryptprimitives.dll, for running Rust test
 * binaries under Wine only. Never ship it.
 *
 * Why: Rust's std (1.78+) imports ProcessPrng from bcryptprimitives.dll
 * (raw-dylib, so the import is resolved when the .exe is loaded, not
 * lazily). Wine 8.0 (Debian 12) has no bcryptprimitives.dll, so every
 * Rust .exe fails to start: exit code 53 and no output (WINEDEBUG=err+module
 * shows the missing DLL).
 * Windows' loader looks in the executable's directory first, so
 * scripts/test-windows.sh copies this DLL beside each test executable.
 *
 * ProcessPrng is implemented with RtlGenRandom (exported by advapi32 as
 * SystemFunction036), which Wine implements by reading the host's
 * random source.
 */
#include <windows.h>

/* Declared by hand: <ntsecapi.h> only gives it as the RtlGenRandom macro. */
__declspec(dllimport) BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* BOOL WINAPI ProcessPrng(PBYTE pbData, SIZE_T cbData);
 * Documented to always return TRUE; we loop because RtlGenRandom takes a
 * ULONG (32-bit) length while cbData is pointer sized. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) {
            /* Real ProcessPrng never fails; std debug-asserts TRUE, so a
             * debug test binary panics here instead of using stale bytes. */
            return FALSE;
        }
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst; (void)reason; (void)reserved;
    return TRUE;
}
