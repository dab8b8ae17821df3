// The header (and the C++ wrapper) compile as C++17 with -Wall -Wextra -Wpedantic -Werror.
#include "tether.h"
#include "tether.h"
#include "tether.hpp"

int main() {
    tether_result r = TETHER_RESULT_OK;
    static_assert(sizeof(tether_str) == 2 * sizeof(void *), "tether_str layout");
    return static_cast<int>(r) + static_cast<int>(tether::version().empty());
}
