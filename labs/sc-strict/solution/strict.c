/* strict.c, finished: ends cleanly in seccomp strict mode (labfleet, lab sc-strict, step exit). */
#include <linux/seccomp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    static const char entered[] = "strict mode on: write(2) still works. Press Enter to go on.\n";
    static const char bye[] = "leaving with _exit(2), the only way out of strict mode\n";
    char c;

    printf("pid %d: entering seccomp strict mode\n", getpid());
    fflush(stdout);
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT);

    write(1, entered, sizeof entered - 1);
    read(0, &c, 1);
    write(1, bye, sizeof bye - 1);
    syscall(SYS_exit, 0);      /* exit(2), not exit_group(2): glibc's exit() and return use exit_group */
    return 0;
}
