/* strict.c: seccomp strict mode (labfleet, lab sc-strict).
 *
 *   gcc -o strict strict.c && ./strict
 *
 * After prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) the kernel allows only read(2), write(2), _exit(2) and
 * sigreturn(2). Anything else ends the process with SIGKILL.
 */
#include <linux/seccomp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(void)
{
    static const char entered[] = "strict mode on: write(2) still works. Press Enter to go on.\n";
    static const char after[] = "still alive after Enter\n";
    char c;

    printf("pid %d: entering seccomp strict mode\n", getpid());
    fflush(stdout);
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT);

    write(1, entered, sizeof entered - 1);
    read(0, &c, 1);            /* read(2) is allowed: look at /proc/<pid>/status now */

    getpid();                  /* not allowed in strict mode: SIGKILL here */
    write(1, after, sizeof after - 1);
    return 0;                  /* and returning calls exit_group(2), which is not allowed either */
}
