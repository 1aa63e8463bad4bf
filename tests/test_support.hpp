#pragma once
// Helpers shared by the tests.
#include <catch2/catch.hpp>

#include <exception>
#include <functional>
#include <string>

namespace test_support {

/// The message of the exception of type E that `f` throws; fails the test when it throws nothing or something else.
template <class E>
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("threw a different exception: " << e.what());
  } catch (...) {
    FAIL("threw a non-std exception");
  }
  FAIL("did not throw");
  return {};
}

}  // namespace test_support
