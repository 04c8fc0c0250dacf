/* empty.c: does nothing. The agent traces it next to hello.c: what hello adds over an empty program
 * is what hello itself needs, and an answer must name all of that (the rest is the C runtime's start-up,
 * where strace runs may differ a little). */
int main(void)
{
    return 0;
}
