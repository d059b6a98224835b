"""C programs both backends' tests compile (with the ``cc`` fixture) and trace."""

# argv: a script, then three files; two threads open the first two, a vforked child execs the
# script on the third, a posix_spawn runs `true` found on PATH; exits 4
THREADS = r"""
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
static void *worker(void *arg) { close(open((char *)arg, O_RDONLY)); return 0; }
int main(int c, char **v) {
    pthread_t t1, t2;
    pthread_create(&t1, 0, worker, v[2]); pthread_create(&t2, 0, worker, v[3]);
    pthread_join(t1, 0); pthread_join(t2, 0);
    pid_t pid = vfork();
    if (pid == 0) { execl(v[1], v[1], v[4], (char *)0); _exit(1); }
    waitpid(pid, 0, 0);
    char *args[] = {"true", 0};
    posix_spawnp(&pid, "true", 0, 0, args, environ);
    waitpid(pid, 0, 0);
    return 4;
}
"""
