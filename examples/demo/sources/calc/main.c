#include <stdio.h>
#include <stdlib.h>
long add(long a, long b);
long mul(long a, long b);

int main(int argc, char **argv)
{
    long a = argc > 2 ? atol(argv[1]) : 6, b = argc > 2 ? atol(argv[2]) : 7;
    printf("%ld + %ld = %ld, %ld * %ld = %ld\n", a, b, add(a, b), a, b, mul(a, b));
    return 0;
}
