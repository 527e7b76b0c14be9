#ifndef GREET_H
#define GREET_H
/* Writes a greeting for `who` into `buf` and returns its length. */
int greet(char *buf, int size, const char *who);
#endif
