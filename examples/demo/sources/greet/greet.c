#include <stdio.h>
#include "config.h"
#include "greet.h"

int greet(char *buf, int size, const char *who)
{
    return snprintf(buf, size, "Hello, %s! (greet %s)", who, GREET_VERSION);
}
