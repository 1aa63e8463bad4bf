// simd/arch.hpp: the instruction-set names, the run-time choice and how it is lowered, and the typed
// errors for a bad MINNOW_ARCH, a set the CPU lacks, or an explicit kernel tag the CPU cannot run.
#include "test_support.hpp"

#include <minnow/simd/arch.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <string_view>

using namespace minnow;
using simd::Isa;

TEST_CASE("instruction-set names parse back, and an unknown name is refused naming it") {
  for (const Isa isa : {Isa::scalar, Isa::avx2, Isa::avx2_vnni, Isa::avx512, Isa::avx512_vnni, Isa::amx, Isa::neon, Isa::neon_dot}) {
    CHECK(simd::parse_isa(simd::isa_name(isa), "test") == isa);
  }
  CHECK_REFUSED(simd::parse_isa("avx3", "MINNOW_ARCH"), value_error,
                Catch::Matchers::Equals("MINNOW_ARCH is 'avx3': expected scalar, avx2, avx2_vnni, avx512, avx512_vnni, amx, neon or neon_dot"));
  CHECK_THROWS_AS(simd::parse_isa("", "MINNOW_ARCH"), value_error);
  CHECK_THROWS_AS(simd::parse_isa("AVX2", "MINNOW_ARCH"), value_error);
}

TEST_CASE("the run-time choice is the CPU's widest set, lowered by set_isa and restored by its return value") {
  const Isa cpu = simd::cpu_isa();
  CHECK(simd::cpu_has(Isa::scalar));
  CHECK(simd::cpu_has(cpu));
  if (cpu != Isa::amx && cpu != Isa::neon_dot && cpu != Isa::scalar) {
    CHECK_FALSE(simd::cpu_has(static_cast<Isa>(static_cast<int>(cpu) + 1)));  // the next set up
  }
  // The other architecture's sets are never this CPU's.
  for (const Isa other : {Isa::avx2, Isa::avx2_vnni, Isa::avx512, Isa::avx512_vnni, Isa::amx, Isa::neon, Isa::neon_dot}) {
    const bool arm = other == Isa::neon || other == Isa::neon_dot;
    if (arm != (cpu == Isa::neon || cpu == Isa::neon_dot)) CHECK_FALSE(simd::cpu_has(other));
  }
  const Isa before = simd::active_isa();
  CHECK(before <= cpu);
  const char* env = std::getenv("MINNOW_ARCH");
  if (env == nullptr || env[0] == '\0') CHECK(before == cpu);
  const Isa previous = simd::set_isa(Isa::scalar);
  CHECK(previous == before);
  CHECK(simd::active_isa() == Isa::scalar);
  CHECK(simd::dispatch([](auto tag) { return std::string(decltype(tag)::name); }) == "scalar");
  simd::set_isa(previous);
  CHECK(simd::active_isa() == before);
  // dispatch hands the tag of the active set (Isa::amx runs the avx512_vnni kernels).
  const std::string expected = before == Isa::amx ? "avx512_vnni" : simd::isa_name(before);
  CHECK(simd::dispatch([](auto tag) { return std::string(decltype(tag)::name); }) == expected);
}

TEST_CASE("a set the CPU lacks is refused by set_isa and by an explicit kernel tag, naming both") {
  if (simd::cpu_has(Isa::amx)) MINNOW_SKIP("this CPU runs every set, so none can be refused");
  const Isa before = simd::active_isa();
  CHECK_REFUSED(simd::set_isa(Isa::amx), value_error, Catch::Matchers::StartsWith("simd::set_isa: this CPU does not run amx"));
  CHECK(simd::active_isa() == before);  // nothing changed
  if (!simd::cpu_has(Isa::avx512_vnni)) {
    CHECK_REFUSED(simd::with_arch<simd::arch::avx512_vnni>("layer 'fc1'", [](auto) {}), value_error,
                  Catch::Matchers::StartsWith("layer 'fc1': asked for the avx512_vnni kernels"));
  }
}

TEST_CASE("the avx2_vnni level runs where the CPU has AVX-VNNI, and is refused where it has not") {
  if (!simd::cpu_has(Isa::avx2)) MINNOW_SKIP("this CPU has no AVX2");
  const Isa before = simd::active_isa();
  const auto tag_name = [] { return simd::dispatch([](auto tag) { return std::string(decltype(tag)::name); }); };
  if (simd::cpu_has(Isa::avx2_vnni)) {
    const Isa previous = simd::set_isa(Isa::avx2_vnni);
    CHECK(simd::active_isa() == Isa::avx2_vnni);
    CHECK(tag_name() == "avx2_vnni");
    simd::set_isa(previous);
  } else {
    CHECK_REFUSED(simd::set_isa(Isa::avx2_vnni), value_error,
                  Catch::Matchers::StartsWith("simd::set_isa: this CPU does not run avx2_vnni"));
  }
  CHECK(simd::active_isa() == before);
}

TEST_CASE("a set of the other architecture is refused by set_isa and by an explicit kernel tag") {
  const Isa before = simd::active_isa();
  const Isa other = simd::cpu_has(Isa::neon) ? Isa::avx2 : Isa::neon;
  CHECK_REFUSED(simd::set_isa(other), value_error,
                Catch::Matchers::StartsWith(std::string("simd::set_isa: this CPU does not run ") + simd::isa_name(other)));
  CHECK(simd::active_isa() == before);
  if (other == Isa::neon) {
    CHECK_REFUSED(simd::with_arch<simd::arch::neon>("layer 'fc1'", [](auto) {}), value_error,
                  Catch::Matchers::StartsWith("layer 'fc1': asked for the neon kernels"));
  } else {
    CHECK_REFUSED(simd::with_arch<simd::arch::avx2>("layer 'fc1'", [](auto) {}), value_error,
                  Catch::Matchers::StartsWith("layer 'fc1': asked for the avx2 kernels"));
  }
}

TEST_CASE("an explicit kernel tag the CPU runs is used as given, whatever the run-time choice") {
  if (!simd::cpu_has(Isa::avx2) && !simd::cpu_has(Isa::neon)) MINNOW_SKIP("this CPU has no vector set to ask for");
  const Isa previous = simd::set_isa(Isa::scalar);
  const auto name_of = [](auto tag) { return std::string(decltype(tag)::name); };
  const std::string name = simd::cpu_has(Isa::avx2) ? simd::with_arch<simd::arch::avx2>("test", name_of)
                                                     : simd::with_arch<simd::arch::neon>("test", name_of);
  simd::set_isa(previous);
  CHECK(name == (simd::cpu_has(Isa::avx2) ? "avx2" : "neon"));
}

// Run by CTest with MINNOW_ARCH=neon on x86-64 (see tests/CMakeLists.txt): a set of another architecture
// is refused with the variable's name, not taken as a ceiling.
TEST_CASE("a MINNOW_ARCH of another architecture is refused naming the variable", "[.][foreign_env]") {
  const char* env = std::getenv("MINNOW_ARCH");
  if (env == nullptr || std::string_view(env) != "neon" || simd::cpu_has(Isa::neon)) {
    MINNOW_SKIP("run with MINNOW_ARCH=neon on an x86-64 CPU");
  }
  CHECK_REFUSED((void)simd::active_isa(), value_error,
                Catch::Matchers::Equals("MINNOW_ARCH is 'neon', a set of another architecture than this build's"));
}

// Run by CTest with MINNOW_ARCH=avx3 (see tests/CMakeLists.txt): every call that consults the choice is
// refused with the variable's name, and keeps being refused.
TEST_CASE("a bad MINNOW_ARCH is refused naming the variable, at every call", "[.][bad_env]") {
  const char* env = std::getenv("MINNOW_ARCH");
  if (env == nullptr || std::string_view(env) != "avx3") MINNOW_SKIP("run with MINNOW_ARCH=avx3");
  for (int i = 0; i < 2; ++i) {
    CHECK_REFUSED((void)simd::active_isa(), value_error, Catch::Matchers::StartsWith("MINNOW_ARCH is 'avx3'"));
  }
}
