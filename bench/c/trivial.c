/* The program the exec loops run: it does nothing and exits 0.
 * Built static (gcc -static -O2) so an exec costs no dynamic loading. */
int main(void)
{
    return 0;
}
