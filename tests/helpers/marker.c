/* marker FILE: creates FILE as the very first thing it does, so a test can
 * tell whether any of this program's own code ran. Static: no loader runs
 * before main either. */
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int fd = open(argv[1], O_CREAT | O_WRONLY, 0644);
    return fd < 0;
}
