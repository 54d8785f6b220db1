/* librotq.so is linked from the whole static library (every object of it); this translation unit
 * only gives the shared target a source of its own. Nothing here is exported. */
#include "rotq.h"

typedef int rotq_shared_unit; /* ISO C forbids an empty translation unit */
