// Interface version of the compiled planner, exported as chipping._planner.ABI_VERSION.
// Bump it together with chipping._backend.ABI_VERSION whenever a binding's name, arguments
// or results change (or its results change for the same inputs): the Python side then
// refuses a build made from older sources instead of failing obscurely.
#pragma once

namespace chipping {

constexpr int kAbiVersion = 2;

}  // namespace chipping
