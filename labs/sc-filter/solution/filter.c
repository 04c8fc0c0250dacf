/* filter.c, finished: mkdir and mkdirat are no longer allowed (labfleet, lab sc-filter, step deny).
 *
 *   gcc -o filter filter.c -lseccomp && ./filter
 *
 * Every system call not in the list below fails with EPERM ("Operation not permitted"): the filter's
 * default action is SCMP_ACT_ERRNO(EPERM). The program then makes a directory, so you can see it work,
 * and waits for Enter so you can look at it from another terminal.
 */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const int allowed[] = {
    SCMP_SYS(read),
    SCMP_SYS(write),
    SCMP_SYS(close),
    SCMP_SYS(fstat),
    SCMP_SYS(newfstatat),
    SCMP_SYS(brk),
    SCMP_SYS(mmap),
    SCMP_SYS(munmap),
    SCMP_SYS(getpid),
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
};

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "made-under-filter";
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    char c;

    if (ctx == NULL) {
        fprintf(stderr, "seccomp_init failed\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
    if (seccomp_load(ctx) != 0) {       /* also sets no_new_privs, so no root is needed */
        fprintf(stderr, "seccomp_load failed\n");
        return 1;
    }
    seccomp_release(ctx);

    printf("pid %d: allow-list filter loaded\n", getpid());
    if (mkdir(dir, 0755) == 0)
        printf("mkdir %s: done\n", dir);
    else
        printf("mkdir %s: %s\n", dir, strerror(errno));
    printf("Look at /proc/%d/status from another terminal; press Enter to quit.\n", getpid());
    fflush(stdout);
    read(0, &c, 1);
    return 0;
}
