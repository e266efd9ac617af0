/* A stand-in for libedgetpu.so.1: an external TFLite delegate without the accelerator.
 *
 * Built by the tests with `cc -shared -fPIC`. It speaks the plugin interface LiteRT's load_delegate
 * uses (tflite_plugin_create_delegate / tflite_plugin_destroy_delegate) and the TfLiteDelegate and
 * TfLiteContext structs of TensorFlow Lite's C API (tensorflow/lite/core/c/common.h), declared here only
 * as far as it reads them. What it does, steered by environment variables read when it is created:
 *   PIDETECT_STANDIN_LOG=FILE       appends one line per call: "create device=usb:0 ...", "claimed N", "invoke"
 *   PIDETECT_STANDIN_DEVICES=LIST   the devices "plugged in", e.g. "usb:0,pci:0" (default "usb:0"; "" = none):
 *                                   the `device` option is matched as libedgetpu does ("", usb, usb:N, pci,
 *                                   pci:N, :N); no match -> create returns NULL (what a missing Coral does)
 *   PIDETECT_STANDIN_DEVICES_FILE=F the same list read from file F at every create and every invoke: writing
 *                                   "" into it unplugs the device (invokes fail), "usb:0" plugs it in again
 *   PIDETECT_STANDIN_FAIL_AFTER=N   invoke of the claimed op fails after N good ones (a device unplugged)
 *   PIDETECT_STANDIN_HANG_AFTER=N   invoke of the claimed op never returns after N good ones (a hung device)
 * Nodes whose custom op is "edgetpu-custom-op" (what edgetpu_compiler writes) are claimed and "run" by
 * setting their outputs to 0: there is no accelerator to compute them. Every other op stays on the
 * CPU, so a CPU model through this delegate gives exactly the CPU's results.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int TfLiteStatus; /* kTfLiteOk = 0, kTfLiteError = 1 */
typedef struct { int size; int data[]; } TfLiteIntArray;
struct TfLiteContext;
struct TfLiteDelegate;

typedef struct TfLiteNode { TfLiteIntArray *inputs, *outputs; } TfLiteNode; /* its first fields only */

/* TfLiteTensor as far as read here; TFLITE_TENSOR_SIZE is sizeof(TfLiteTensor) of TF 2.x (112 bytes on 64-bit:
 * type, data, dims, params, allocation_type, bytes, allocation, name, delegate, buffer_handle, data_is_stale,
 * is_variable, quantization, sparsity, dims_signature). The kernel checks `bytes` against the dims before
 * writing, so a runtime with another layout fails loudly instead of writing somewhere else. */
#define TFLITE_TENSOR_SIZE 112
typedef struct {
  int type; /* kTfLiteFloat32 = 1, kTfLiteInt32 = 2, kTfLiteUInt8 = 3, kTfLiteInt8 = 9 */
  void *data;
  TfLiteIntArray *dims;
  float scale;
  int32_t zero_point;
  int allocation_type;
  size_t bytes;
} TensorHead;

typedef struct TfLiteRegistration {
  void *(*init)(struct TfLiteContext *, const char *, size_t);
  void (*free)(struct TfLiteContext *, void *);
  TfLiteStatus (*prepare)(struct TfLiteContext *, TfLiteNode *);
  TfLiteStatus (*invoke)(struct TfLiteContext *, TfLiteNode *);
  const char *(*profiling_string)(const struct TfLiteContext *, const TfLiteNode *);
  int32_t builtin_code;
  const char *custom_name;
  int version;
  void *registration_external;
  void *async_kernel;
  uint64_t inplace_operator;
  void *reserved[8]; /* passed by value: larger than the runtime's own is harmless, smaller is not */
} TfLiteRegistration;

typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext *, TfLiteIntArray **);
  void *tensors;
  void *impl_;
  void *ResizeTensor;
  void (*ReportError)(struct TfLiteContext *, const char *, ...);
  void *AddTensors;
  TfLiteStatus (*GetNodeAndRegistration)(struct TfLiteContext *, int, TfLiteNode **, TfLiteRegistration **);
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(struct TfLiteContext *, TfLiteRegistration,
                                                        const TfLiteIntArray *, struct TfLiteDelegate *);
} TfLiteContext;

typedef struct TfLiteDelegate {
  void *data_;
  TfLiteStatus (*Prepare)(TfLiteContext *, struct TfLiteDelegate *);
  void *CopyFromBufferHandle;
  void *CopyToBufferHandle;
  void *FreeBufferHandle;
  int64_t flags;
  void *opaque_delegate_builder;
} TfLiteDelegate;

typedef struct {
  TfLiteDelegate delegate;
  char log_path[512];
  long fail_after, hang_after, invokes;
} StandIn;

static StandIn *current; /* the kernel's callbacks get no delegate pointer; one stand-in at a time is enough */

static void say(const StandIn *s, const char *line) {
  if (!s->log_path[0]) return;
  FILE *f = fopen(s->log_path, "a");
  if (!f) return;
  fprintf(f, "%s\n", line);
  fclose(f);
}

static long env_long(const char *name) {
  const char *v = getenv(name);
  return v && *v ? atol(v) : -1;
}

/* The devices "plugged in" now: from the devices file, else the environment, else one USB Edge TPU. */
static const char *plugged_devices(char *buffer, size_t size) {
  const char *path = getenv("PIDETECT_STANDIN_DEVICES_FILE");
  if (path) {
    buffer[0] = 0;
    FILE *f = fopen(path, "r");
    if (f) {
      size_t n = fread(buffer, 1, size - 1, f);
      buffer[n] = 0;
      fclose(f);
      buffer[strcspn(buffer, "\r\n")] = 0;
    }
    return buffer;
  }
  const char *plugged = getenv("PIDETECT_STANDIN_DEVICES");
  return plugged ? plugged : "usb:0";
}

static TfLiteStatus kernel_prepare(TfLiteContext *c, TfLiteNode *n) { (void)c; (void)n; return 0; }

/* The claimed op's outputs set to 0 (as raw values): no accelerator computes them, and an arena left as it
 * was would make up detections from whatever bytes it held before. */
static TfLiteStatus clear_outputs(TfLiteContext *c, TfLiteNode *n) {
  for (int i = 0; i < n->outputs->size; i++) {
    TensorHead *t = (TensorHead *)((char *)c->tensors + (size_t)n->outputs->data[i] * TFLITE_TENSOR_SIZE);
    size_t element = t->type == 1 || t->type == 2 ? 4 : (t->type == 3 || t->type == 9 ? 1 : 0);
    size_t count = 1;
    for (int d = 0; d < t->dims->size; d++) count *= (size_t)t->dims->data[d];
    if (!element || count * element != t->bytes || !t->data) {
      c->ReportError(c, "stand-in: this runtime's TfLiteTensor layout is not the one the stand-in knows");
      return 1;
    }
    memset(t->data, 0, t->bytes);
  }
  return 0;
}

static TfLiteStatus kernel_invoke(TfLiteContext *c, TfLiteNode *n) {
  StandIn *s = current;
  if (!s) return 1;
  s->invokes++;
  char buffer[256];
  if ((s->fail_after >= 0 && s->invokes > s->fail_after) || !plugged_devices(buffer, sizeof buffer)[0]) {
    say(s, "invoke failed");
    c->ReportError(c, "Failed to execute request: the Edge TPU stand-in lost its device (unplugged).");
    return 1;
  }
  if (s->hang_after >= 0 && s->invokes > s->hang_after) {
    say(s, "invoke hangs");
    for (;;) pause();
  }
  return clear_outputs(c, n);
}

static TfLiteStatus delegate_prepare(TfLiteContext *c, TfLiteDelegate *d) {
  StandIn *s = (StandIn *)d;
  TfLiteIntArray *plan;
  if (c->GetExecutionPlan(c, &plan) != 0) return 1;
  TfLiteIntArray *claim = calloc(1, sizeof(int) * (plan->size + 1));
  for (int i = 0; i < plan->size; i++) {
    TfLiteNode *node;
    TfLiteRegistration *reg;
    if (c->GetNodeAndRegistration(c, plan->data[i], &node, &reg) != 0) continue;
    if (reg->custom_name && strcmp(reg->custom_name, "edgetpu-custom-op") == 0) claim->data[claim->size++] = plan->data[i];
  }
  char line[64];
  snprintf(line, sizeof line, "claimed %d", claim->size);
  say(s, line);
  TfLiteStatus status = 0;
  if (claim->size) {
    TfLiteRegistration kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.prepare = kernel_prepare;
    kernel.invoke = kernel_invoke;
    kernel.custom_name = "EdgeTpuStandIn";
    kernel.version = 1;
    status = c->ReplaceNodeSubsetsWithDelegateKernels(c, kernel, claim, d);
  }
  free(claim);
  return status;
}

/* libedgetpu's device strings: "" any, "usb" / "pci" any of that kind, "usb:N" / "pci:N" the Nth of it, ":N" the Nth. */
static int device_matches(const char *wanted, const char *plugged) {
  if (!wanted[0]) return plugged[0] != 0;
  char list[256];
  snprintf(list, sizeof list, "%s", plugged);
  int nth = 0;
  for (char *dev = strtok(list, ","); dev; dev = strtok(NULL, ","), nth++) {
    if (strcmp(wanted, dev) == 0) return 1;
    if ((strcmp(wanted, "usb") == 0 || strcmp(wanted, "pci") == 0) && strncmp(wanted, dev, 3) == 0) return 1;
    if (wanted[0] == ':' && atoi(wanted + 1) == nth) return 1;
  }
  return 0;
}

TfLiteDelegate *tflite_plugin_create_delegate(char **keys, char **values, size_t n, void (*report_error)(const char *)) {
  StandIn *s = calloc(1, sizeof *s);
  const char *log = getenv("PIDETECT_STANDIN_LOG");
  if (log) snprintf(s->log_path, sizeof s->log_path, "%s", log);
  char line[1024] = "create";
  const char *device = "";
  for (size_t i = 0; i < n; i++) {
    size_t used = strlen(line);
    snprintf(line + used, sizeof line - used, " %s=%s", keys[i], values[i]);
    if (strcmp(keys[i], "device") == 0) device = values[i];
  }
  say(s, line);
  char buffer[256];
  if (!device_matches(device, plugged_devices(buffer, sizeof buffer))) {
    if (report_error) report_error("stand-in: no Edge TPU device matches");
    say(s, "no device");
    free(s);
    return NULL;
  }
  s->fail_after = env_long("PIDETECT_STANDIN_FAIL_AFTER");
  s->hang_after = env_long("PIDETECT_STANDIN_HANG_AFTER");
  s->delegate.Prepare = delegate_prepare;
  s->delegate.flags = 1; /* kTfLiteDelegateFlagsAllowDynamicTensors: else the runtime prepares the graph first and fails on the op no kernel runs */
  current = s;
  return &s->delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate *d) {
  StandIn *s = (StandIn *)d;
  if (!s) return; /* LiteRT calls this with NULL after a create that returned NULL */
  say(s, "destroy");
  if (current == s) current = NULL;
  free(s);
}
