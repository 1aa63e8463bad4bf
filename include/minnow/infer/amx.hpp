#pragma once
/// @file infer/amx.hpp
/// @brief Intel AMX (Advanced Matrix Extensions) for the int8 GEMM: whether this process may use it, and
/// the tile kernel.
///
/// AMX adds eight tile registers of up to 16 rows × 64 bytes and `tdpbusd`, which multiplies a 16 × 64
/// uint8 tile by a 64 × 16 int8 tile (stored as 16 rows of 16 columns × 4 bytes, the same 4-byte groups
/// vpdpbusd reads) into 16 × 16 int32 accumulators: 16,384 exact multiply-adds per instruction, in int32
/// without saturation, as vpdpbusd. So its sums are the VNNI path's bit for bit.
///
/// It exists on Intel Xeon from Sapphire Rapids on (CPUID.7.0:EDX bits 24 and 25). Linux also makes a
/// process ask for the 8 KB of tile state first (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`);
/// `simd::cpu_has(simd::Isa::amx)` (simd/arch.hpp) checks the CPU, asks once, and checks that the OS
/// enabled the state (XCR0 bits 17 and 18). The GEMM uses the tiles when
/// activations were packed while simd::active_isa() was Isa::amx, so `MINNOW_ARCH=avx512_vnni` or
/// `simd::set_isa` turns them off for every packing after it.
/// Tile registers are per-thread state: every thread loads the configuration before its first tile
/// instruction and releases the tiles when done (`amx::TileScope`).

#include <minnow/simd/arch.hpp>
#include <minnow/tensor.hpp>

#include <cstdint>

namespace minnow::infer::amx {

/// Whether the int8 GEMM packs activations for the tiles: the active set is Isa::amx.
[[nodiscard]] inline bool enabled() { return simd::active_isa() == simd::Isa::amx; }

/// Rows of an activation tile and bytes of k per tile step.
inline constexpr index_t kRows = 16;
inline constexpr index_t kDepth = 64;

#if MINNOW_AMX_COMPILED

/// The tile configuration of the kernel: tiles 0–2 accumulate 16 × 16 int32, tile 3 holds 16 activation
/// rows × 64 bytes, tiles 4–6 hold 16 k groups × 16 channels × 4 bytes of weights.
struct alignas(64) TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64};
  std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16};
};
static_assert(sizeof(TileConfig) == 64);

/// Loads the configuration on this thread for its lifetime and releases the tiles at the end.
class TileScope {
 public:
  __attribute__((target("amx-tile"))) TileScope() noexcept {
    static const TileConfig config{};
    _tile_loadconfig(&config);
  }
  __attribute__((target("amx-tile"))) ~TileScope() { _tile_release(); }
  TileScope(const TileScope&) = delete;
  TileScope& operator=(const TileScope&) = delete;
};

inline constexpr index_t kPanelRow = 192;  ///< bytes of one k group of a 48-channel weight panel

/// Tiles 0–2 += 16 rows of A (64 bytes each, `lda` apart) × 16 k groups of the three 16-channel thirds of
/// the weight panel at `w`.
__attribute__((target("amx-tile,amx-int8"))) inline void tile_step(const std::uint8_t* a, index_t lda,
                                                                      const std::int8_t* w) noexcept {
  _tile_loadd(3, a, lda);
  _tile_loadd(4, w, kPanelRow);
  _tile_loadd(5, w + 64, kPanelRow);
  _tile_loadd(6, w + 128, kPanelRow);
  _tile_dpbusd(0, 3, 4);
  _tile_dpbusd(1, 3, 5);
  _tile_dpbusd(2, 3, 6);
}

/// @brief `c[16 × 48] = A · W` over `blocks` steps of 64 k: A is 16 uint8 rows `lda` bytes apart, W the
/// 48-channel weight panel (per group of 4 k, 48 channels × 4 bytes: 192-byte rows, so each 16-channel
/// third is a tile of 16 rows read 192 bytes apart, no repacking). `tail`, when not null, is one more
/// 16-group step of W (zero-padded) for the A columns after the `blocks` full ones. `c` rows are 48 int32.
/// Needs a TileScope on this thread.
__attribute__((target("amx-tile,amx-int8"))) inline void kernel_16x48(index_t blocks, const std::uint8_t* a, index_t lda,
                                                                         const std::int8_t* w, const std::int8_t* tail,
                                                                         std::int32_t* c) noexcept {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  for (index_t s = 0; s < blocks; ++s) tile_step(a + s * kDepth, lda, w + s * 16 * kPanelRow);
  if (tail != nullptr) tile_step(a + blocks * kDepth, lda, tail);
  _tile_stored(0, c, 48 * 4);
  _tile_stored(1, c + 16, 48 * 4);
  _tile_stored(2, c + 32, 48 * 4);
}

#endif

}  // namespace minnow::infer::amx
