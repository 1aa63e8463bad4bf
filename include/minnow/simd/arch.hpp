#pragma once
/// @file simd/arch.hpp
/// @brief The instruction sets of minnow's hand-written kernels: the tags a kernel is written for, which
/// set this CPU runs, and how a call picks its kernel.
///
/// A kernel family is a set of overloads on a tag: `arch::scalar` (plain C++, the reference twin the
/// tests compare every other path with), `arch::avx2` (AVX2 + FMA: x86-64-v3, Haswell / Zen 1 on),
/// `arch::avx2_vnni` (those + AVX-VNNI, the 256-bit vpdpbusd: Alder Lake, Sapphire Rapids, Zen 5 on, used by
/// the int8 kernels), `arch::avx512` (AVX-512 F/BW/DQ/VL/CD: x86-64-v4, Skylake-X on) and `arch::avx512_vnni` (those + VNNI:
/// Cascade Lake / Zen 4 on, what the int8 kernels need; the int8 direct convolution and uint8 pooling
/// also need VBMI, Ice Lake on, and check `cpu_has_vbmi()`). The tags form inheritance chains, as xsimd's
/// do (avx2_vnni and avx512 both derive from avx2), so a family with no overload for a tag serves it with
/// the next one down. AVX-VNNI is not part of AVX-512 (Skylake-X and Cascade Lake lack it), so the level
/// avx2_vnni is run only where the CPU has it, and lowers to avx2 elsewhere.
///
/// The x86 overloads carry `MINNOW_TARGET_AVX2`, `MINNOW_TARGET_AVX512` or `MINNOW_TARGET_AVX512_VNNI`
/// (GCC and clang `target` attributes): they are compiled whatever `-march` the including program uses, and run only where the
/// CPU has their instructions. Public entry points take `Arch = arch::automatic`, which `with_arch`
/// resolves at each call to the widest set the CPU has (detected once), lowered by:
///  - the environment variable `MINNOW_ARCH` = `scalar`, `avx2`, `avx2_vnni`, `avx512`, `avx512_vnni` or `amx` (read
///    once);
///  - `simd::set_isa(Isa)` (at most what the CPU has; returns the previous setting).
/// A tag given explicitly as a template argument runs that path after checking the CPU has it (a typed
/// error, never SIGILL). Overloads that take a tag *object* are the kernels themselves: they trust their
/// caller to have resolved the tag with `with_arch` or `dispatch`.
/// Built with `-march=native` the attributes add nothing and the kernels inline as before; the run-time
/// choice costs one relaxed atomic load per layer call.
///
/// `Isa::amx` sits above avx512_vnni: the int8 GEMM's AMX tiles (infer/amx.hpp), which also need the
/// OS's permission for the tile state, asked for only when nothing lowers the setting below amx.
///
/// On AArch64 the sets are `arch::neon` (Advanced SIMD, every AArch64 CPU) and `arch::neon_dot` (those + the
/// dot-product instructions sdot/udot, Armv8.2-A DotProd: Cortex-A55/A76, Neoverse N1 and Apple M1 on, read
/// from the kernel's HWCAP), with `MINNOW_ARCH` = `scalar`, `neon` or `neon_dot`. A build names the sets
/// of its own architecture only; asking for the other's is an error.

#include <minnow/error.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string_view>
#include <type_traits>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
/// The x86 kernels are compiled (GCC and clang accept intrinsics in functions with a `target` attribute).
#define MINNOW_X86_KERNELS 1
#include <cpuid.h>
// GCC 12 warns falsely inside its own AVX-512 intrinsics once they are inlined (GCC bug 105593, fixed in
// GCC 13); the warnings point into immintrin.h, so silencing them over its lines suffices when this is
// its first inclusion.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop
// Each attribute enables exactly what detect_vector_isa checks for its set.
#define MINNOW_TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2,popcnt")))
#define MINNOW_TARGET_AVX2_VNNI __attribute__((target("avx2,fma,bmi,bmi2,popcnt,avxvnni")))
#define MINNOW_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx2,fma,bmi,bmi2,popcnt")))
#define MINNOW_TARGET_AVX512_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx512vnni,avx2,fma,bmi,bmi2,popcnt")))
#define MINNOW_TARGET_AVX512_VBMI \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx512vnni,avx512vbmi,avx2,fma,bmi,bmi2,popcnt")))
#else
#define MINNOW_X86_KERNELS 0
#define MINNOW_TARGET_AVX2
#define MINNOW_TARGET_AVX2_VNNI
#define MINNOW_TARGET_AVX512
#define MINNOW_TARGET_AVX512_VNNI
#define MINNOW_TARGET_AVX512_VBMI
#endif

#if (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__) && defined(__ARM_NEON)
/// The AArch64 kernels are compiled: Advanced SIMD is part of the base architecture, and the dot-product
/// kernels carry a `target` attribute, so they are compiled whatever `-march` the including program uses.
#define MINNOW_ARM_KERNELS 1
#include <arm_neon.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(__clang__)
#define MINNOW_TARGET_NEON_DOT __attribute__((target("dotprod")))
#else
#define MINNOW_TARGET_NEON_DOT __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#else
#define MINNOW_ARM_KERNELS 0
#define MINNOW_TARGET_NEON_DOT
#endif

#if MINNOW_X86_KERNELS && defined(__linux__) && (__has_include(<amxtileintrin.h>) || __has_include(<amxintrin.h>))
/// The AMX tile kernels are compiled (GCC 11 / clang 12 headers, Linux's permission request).
#define MINNOW_AMX_COMPILED 1
#include <sys/syscall.h>
#include <unistd.h>
#else
#define MINNOW_AMX_COMPILED 0
#endif

namespace minnow::simd {

/// Instruction sets, in increasing order within each architecture (x86-64: avx2 … amx; AArch64: neon,
/// neon_dot); scalar is the bottom of both.
enum class Isa : int { scalar = 0, avx2 = 1, avx2_vnni = 2, avx512 = 3, avx512_vnni = 4, amx = 5, neon = 6, neon_dot = 7 };

[[nodiscard]] constexpr const char* isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::avx2: return "avx2";
    case Isa::avx2_vnni: return "avx2_vnni";
    case Isa::avx512: return "avx512";
    case Isa::avx512_vnni: return "avx512_vnni";
    case Isa::amx: return "amx";
    case Isa::neon: return "neon";
    case Isa::neon_dot: return "neon_dot";
    default: return "scalar";
  }
}

/// @brief The set named `name` (as isa_name spells it).
/// @throws value_error naming `what` and the accepted names for anything else.
[[nodiscard]] inline Isa parse_isa(std::string_view name, std::string_view what) {
  for (const Isa isa :
       {Isa::scalar, Isa::avx2, Isa::avx2_vnni, Isa::avx512, Isa::avx512_vnni, Isa::amx, Isa::neon, Isa::neon_dot}) {
    if (name == isa_name(isa)) return isa;
  }
  throw value_error(minnow::detail::concat(what, " is '", name,
                                           "': expected scalar, avx2, avx2_vnni, avx512, avx512_vnni, amx, neon or neon_dot"));
}

/// Kernel tags: an overload for a base tag serves every derived tag it is not written for.
namespace arch {
struct scalar {
  static constexpr const char* name = "scalar";
  static constexpr Isa isa = Isa::scalar;
};
struct avx2 : scalar {
  static constexpr const char* name = "avx2";
  static constexpr Isa isa = Isa::avx2;
};
struct avx2_vnni : avx2 {
  static constexpr const char* name = "avx2_vnni";
  static constexpr Isa isa = Isa::avx2_vnni;
};
struct avx512 : avx2 {
  static constexpr const char* name = "avx512";
  static constexpr Isa isa = Isa::avx512;
};
struct avx512_vnni : avx512 {
  static constexpr const char* name = "avx512_vnni";
  static constexpr Isa isa = Isa::avx512_vnni;
};
struct neon : scalar {
  static constexpr const char* name = "neon";
  static constexpr Isa isa = Isa::neon;
};
struct neon_dot : neon {
  static constexpr const char* name = "neon_dot";
  static constexpr Isa isa = Isa::neon_dot;
};
/// Not a kernel tag: "the widest set this CPU runs", resolved by with_arch at each call.
struct automatic {};
}  // namespace arch

namespace detail {

/// AVX-VNNI: CPUID.(EAX=7, ECX=1):EAX bit 4 (its YMM state is AVX2's, which the caller checks).
[[nodiscard]] inline bool avx_vnni() noexcept {
#if MINNOW_X86_KERNELS
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) != 0 && ((eax >> 4) & 1u) != 0;
  }();
  return has;
#else
  return false;
#endif
}

/// The widest vector set of this CPU with its OS support (libgcc's / compiler-rt's CPU model checks XCR0).
[[nodiscard]] inline Isa detect_vector_isa() noexcept {
#if MINNOW_X86_KERNELS
  __builtin_cpu_init();
  // Each set includes the one below it (the AVX-512 tags also run AVX2 kernels).
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
        __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt"))) {
    return Isa::scalar;
  }
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd")) {
    return __builtin_cpu_supports("avx512vnni") ? Isa::avx512_vnni : Isa::avx512;
  }
  return avx_vnni() ? Isa::avx2_vnni : Isa::avx2;
#elif MINNOW_ARM_KERNELS && defined(__linux__)
  constexpr unsigned long kHwcapAsimdDp = 1UL << 20;  // HWCAP_ASIMDDP of <asm/hwcap.h>
  return (getauxval(AT_HWCAP) & kHwcapAsimdDp) != 0 ? Isa::neon_dot : Isa::neon;
#elif MINNOW_ARM_KERNELS
  return Isa::neon;
#else
  return Isa::scalar;
#endif
}

/// The widest set this build names: the top of its architecture's sets.
constexpr Isa kTopIsa = MINNOW_X86_KERNELS ? Isa::amx : (MINNOW_ARM_KERNELS ? Isa::neon_dot : Isa::scalar);

/// Whether `isa` is scalar or one of this build's architecture's sets.
[[nodiscard]] constexpr bool same_architecture(Isa isa) noexcept {
  if (isa == Isa::scalar) return true;
  const bool arm = isa == Isa::neon || isa == Isa::neon_dot;
  return arm ? MINNOW_ARM_KERNELS != 0 : MINNOW_X86_KERNELS != 0;
}

[[nodiscard]] inline Isa vector_isa() noexcept {
  static const Isa isa = detect_vector_isa();
  return isa;
}

/// AMX-TILE and AMX-INT8 (CPUID.7.0:EDX bits 24, 25), then Linux's permission for the tile data
/// (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)), then XCR0 bits 17 and 18 set by the OS.
[[nodiscard]] inline bool detect_amx() noexcept {
#if MINNOW_AMX_COMPILED
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  if (((edx >> 24) & 1u) == 0 || ((edx >> 25) & 1u) == 0) return false;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((lo >> 17) & 3u) == 3u;
#else
  return false;
#endif
}

[[nodiscard]] inline bool vbmi() noexcept {
#if MINNOW_X86_KERNELS
  static const bool has = __builtin_cpu_supports("avx512vbmi");
  return has;
#else
  return false;
#endif
}

[[nodiscard]] inline bool amx_usable() noexcept {
  static const bool ok = vector_isa() == Isa::avx512_vnni && detect_amx();
  return ok;
}

/// The ceiling set by MINNOW_ARCH or set_isa. Reading a bad MINNOW_ARCH throws, and throws again at the
/// next call (the static is initialised only once that succeeds).
[[nodiscard]] inline std::atomic<int>& ceiling() {
  static std::atomic<int> value{[] {
    const char* env = std::getenv("MINNOW_ARCH");
    if (env == nullptr || env[0] == '\0') return static_cast<int>(kTopIsa);
    const Isa isa = parse_isa(env, "MINNOW_ARCH");
    if (!same_architecture(isa)) {
      throw value_error(minnow::detail::concat("MINNOW_ARCH is '", env, "', a set of another architecture than this build's"));
    }
    return static_cast<int>(isa);
  }()};
  return value;
}

}  // namespace detail

/// @brief The widest set this CPU and OS run (asks the OS for the AMX tile state when the CPU has AMX).
[[nodiscard]] inline Isa cpu_isa() noexcept { return detail::amx_usable() ? Isa::amx : detail::vector_isa(); }

/// @brief Whether this CPU runs `isa`'s kernels.
[[nodiscard]] inline bool cpu_has(Isa isa) noexcept {
  if (isa == Isa::amx) return detail::amx_usable();
  if (isa == Isa::avx2_vnni) return detail::avx_vnni() && detail::vector_isa() >= Isa::avx2_vnni;  // x86 only
  return isa == Isa::scalar || (detail::same_architecture(isa) && isa <= detail::vector_isa());
}

/// @brief Whether the CPU also has AVX-512 VBMI (byte permutes), which the avx512_vnni int8 direct
/// convolution and uint8 pooling kernels use; without it those layers take their other avx512_vnni paths.
[[nodiscard]] inline bool cpu_has_vbmi() noexcept { return cpu_has(Isa::avx512_vnni) && detail::vbmi(); }

/// @brief The set arch::automatic runs: the CPU's widest, lowered by MINNOW_ARCH and set_isa. The OS is
/// not asked for the AMX state when the setting is below amx.
/// @throws value_error when MINNOW_ARCH holds an unknown name.
[[nodiscard]] inline Isa active_isa() {
  const auto ceiling = static_cast<Isa>(detail::ceiling().load(std::memory_order_relaxed));
  const Isa vector = detail::vector_isa();
  if (ceiling != Isa::amx || vector < Isa::avx512_vnni) {
    const Isa isa = std::min(ceiling, vector);
    return isa == Isa::avx2_vnni && !detail::avx_vnni() ? Isa::avx2 : isa;  // AVX-512 without AVX-VNNI
  }
  return detail::amx_usable() ? Isa::amx : Isa::avx512_vnni;
}

/// @brief Lowers (or raises back, up to the CPU's) the set arch::automatic runs, for the whole process,
/// from the next call on. Returns the set that ran before, so that `set_isa(previous)` restores it.
/// @throws value_error when the CPU does not run `isa` (nothing changes then), or when MINNOW_ARCH holds an
/// unknown name.
inline Isa set_isa(Isa isa) {
  if (!cpu_has(isa)) {
    throw value_error(minnow::detail::concat("simd::set_isa: this CPU does not run ", isa_name(isa), " (its widest is ",
                                             isa_name(cpu_isa()), ")"));
  }
  const auto previous = static_cast<Isa>(detail::ceiling().exchange(static_cast<int>(isa), std::memory_order_relaxed));
  // Below amx the OS is not asked for the tile state.
  if (previous == Isa::amx) return cpu_isa();
  const Isa was = std::min(previous, detail::vector_isa());
  return was == Isa::avx2_vnni && !detail::avx_vnni() ? Isa::avx2 : was;
}

/// @brief Calls `f(tag)` with the tag of active_isa()'s kernels (Isa::amx runs the avx512_vnni tag; the
/// int8 GEMM looks at active_isa() itself for its tiles).
template <class F>
decltype(auto) dispatch(F&& f) {
#if MINNOW_X86_KERNELS
  switch (active_isa()) {
    case Isa::amx:
    case Isa::avx512_vnni: return f(arch::avx512_vnni{});
    case Isa::avx512: return f(arch::avx512{});
    case Isa::avx2_vnni: return f(arch::avx2_vnni{});
    case Isa::avx2: return f(arch::avx2{});
    default: break;
  }
#elif MINNOW_ARM_KERNELS
  switch (active_isa()) {
    case Isa::neon_dot: return f(arch::neon_dot{});
    case Isa::neon: return f(arch::neon{});
    default: break;
  }
#endif
  return f(arch::scalar{});
}

/// @brief `f(tag)`: for arch::automatic the run-time choice (dispatch), otherwise `Arch{}` after checking
/// that this CPU runs it.
/// @throws value_error naming `context` when the CPU lacks an explicitly asked set.
template <class Arch, class F>
decltype(auto) with_arch(std::string_view context, F&& f) {
  if constexpr (std::is_same_v<Arch, arch::automatic>) {
    return dispatch(f);
  } else {
    static_assert(std::is_base_of_v<arch::scalar, Arch>, "Arch must be a simd::arch tag or arch::automatic");
    if (!cpu_has(Arch::isa)) {
      throw value_error(minnow::detail::concat(context, ": asked for the ", Arch::name, " kernels; this CPU runs at most ",
                                               isa_name(cpu_isa())));
    }
    return f(Arch{});
  }
}

}  // namespace minnow::simd
