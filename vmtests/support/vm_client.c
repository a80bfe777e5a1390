/* Placeholder; the vmtests branch replaces it with the escape probe client. */
int main(void) { return 0; }
