/* hello.c: a small program whose system calls you list with strace (labfleet, lab sc-profile).
 *
 * Build and trace it:
 *   gcc -o hello hello.c
 *   strace -f -c -o profile.txt ./hello
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

int main(void)
{
    struct utsname u;
    const char greeting[] = "hello, seccomp\n";

    uname(&u);
    printf("hello from pid %d on %s\n", getpid(), u.nodename);
    mkdir("hello-out", 0755);
    int fd = open("hello-out/greeting.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        write(fd, greeting, sizeof greeting - 1);
        close(fd);
    }
    return 0;
}
