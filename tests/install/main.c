/* Uses the installed library through its public header only. */
#include <stdio.h>
#include <string.h>
#include <topkattn/topkattn.h>

int main(void) {
  tka_runtime* rt = NULL;
  tka_status s = tka_runtime_create(NULL, &rt);
  printf("topkattn %s: tka_runtime_create -> %s\n", tka_version(), tka_status_string(s));
  if (s == TKA_SUCCESS) tka_runtime_destroy(rt);
  return (s == TKA_SUCCESS || s == TKA_ERROR_NO_DEVICE) ? 0 : 1;
}
