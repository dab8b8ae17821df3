/* The header compiles as C11 with -Wall -Wextra -Wpedantic -Werror, included twice. */
#include "tether.h"
#include "tether.h"

int main(void) {
    tether_result r = TETHER_RESULT_OK;
    return (int)r + (TETHER_VERSION_MAJOR >= 0 ? 0 : 1);
}
