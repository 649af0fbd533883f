// The native boundary stamp: per-module backward spans without a Python callback.
//
// reimpl/nn/modules/module.py ties each traced module call to the tensors that
// bound its backward (its output and its input). The Python path puts a tensor
// hook on each such tensor; autograd then calls back into Python at every module
// boundary (3-5 us before any bookkeeping). Here the same hook is a C++
// FunctionPreHook on the tensor's grad_fn: when autograd reaches the node it
// closes the spans of modules whose input that tensor is and opens those of
// modules whose output it is, exactly as `_stamp` does, but appends plain
// structs to a buffer of the running thread, under that buffer's own mutex
// (uncontended but for the recorder's drain), never the GIL.
//
// Span ids must stay in start order among all the spans of the process (the
// reader nests spans from ids and close order), and a backward span opens
// while Python spans (hooks, SyncBatchNorm's backward) may start inside it. So
// the recorder draws its ids from the same atomic counter (`next_id`) that the
// stamps draw from. The recorder drains the buffers at each flush (`drain`) and
// places each record among its thread's records in close order.
//
// Python API (all called with the GIL held):
//   link(result, args, entry)   from forward: entry = (path, attrs, ...)
//   next_id() -> int            the process's span ids, 1, 2, ...
//   reset()                     ids start again at 1; buffered stamps dropped
//   enable(bool)                stamps record only while a recorder drains them
//   drain(kind, func, cut_ns)   the records closed by cut_ns, (id, 0, tid, start,
//     -> list                   end, kind, path, func, attrs), each thread's in close order
//   clock_ns() -> int           the stamps' clock (CLOCK_MONOTONIC, as perf_counter_ns)
//   pending() -> int            records waiting to be drained
#include <Python.h>
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/python_variable.h>

namespace {

using torch::autograd::variable_list;

// The same clock as time.perf_counter_ns() on Linux.
inline int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// threading.get_ident() is pthread_self() as an unsigned long.
inline unsigned long thread_ident() {
  return static_cast<unsigned long>(pthread_self());
}

std::atomic<int64_t> g_next_id{1};
std::atomic<bool> g_enabled{false};

// One module call's backward span: shared by the hook on its output (which
// opens it) and the hook on its input (which closes it). id: 0 not yet open,
// > 0 open, -1 closed; as the Python path's record list.
struct Call {
  int64_t id = 0;
  int64_t start = 0;
  int32_t slot;
  explicit Call(int32_t s) : slot(s) {}
};

struct Closed {
  int64_t id, start, end;
  unsigned long tid;
  int32_t slot;
};

// The stamps of one thread. Shared with the registry, so a thread that ends
// leaves its records for the next drain.
struct ThreadBuf {
  std::mutex mu;
  std::vector<Closed> closed;
  std::vector<std::shared_ptr<Call>> open;  // opened in the running backward, in order
  bool queued = false;  // an end-of-backward callback is queued
};

struct Registry {
  std::mutex mu;
  std::vector<std::shared_ptr<ThreadBuf>> bufs;
};

Registry* g_registry = new Registry();  // replaced (never freed) in a forked child
thread_local std::shared_ptr<ThreadBuf> tl_buf;

ThreadBuf* this_thread_buf() {
  if (!tl_buf) {
    tl_buf = std::make_shared<ThreadBuf>();
    std::lock_guard<std::mutex> g(g_registry->mu);
    g_registry->bufs.push_back(tl_buf);
  }
  return tl_buf.get();
}

// A forked child keeps only the forking thread, and any of the parent's
// mutexes may have been held by a thread that is gone: start afresh, dropping
// (not freeing) what was inherited, so the child never re-emits the parent's stamps.
void after_fork_in_child() {
  g_registry = new Registry();
  new (&tl_buf) std::shared_ptr<ThreadBuf>();  // forget, without releasing, the old one
}

// Runs when a backward pass ends (autograd's final callbacks): closes what is
// still open, innermost first (modules whose input had no grad_fn).
void close_open(const std::shared_ptr<ThreadBuf>& buf) {
  unsigned long tid = thread_ident();
  bool record = g_enabled.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> g(buf->mu);
  int64_t now = now_ns();
  buf->queued = false;
  for (auto it = buf->open.rbegin(); it != buf->open.rend(); ++it) {
    Call& c = **it;
    if (c.id > 0) {
      if (record) buf->closed.push_back({c.id, c.start, now, tid, c.slot});
      c.id = -1;
    }
  }
  buf->open.clear();
}

struct BoundaryHook : torch::autograd::FunctionPreHook {
  explicit BoundaryHook(uint32_t nr) : output_nr(nr) {}
  uint32_t output_nr;
  std::vector<std::shared_ptr<Call>> closers;  // inner modules first
  std::vector<std::shared_ptr<Call>> openers;  // inner modules first

  variable_list operator()(const variable_list& grads) override {
    if (!g_enabled.load(std::memory_order_relaxed)) return grads;
    ThreadBuf* buf = this_thread_buf();
    bool queue;
    {
      std::lock_guard<std::mutex> g(buf->mu);
      // read under the lock: a drain that cuts at time T sees every stamp before T
      int64_t now = now_ns();
      if (!closers.empty()) {
        unsigned long tid = thread_ident();
        for (auto& c : closers) {  // inner modules close first
          if (c->id > 0) {
            buf->closed.push_back({c->id, c->start, now, tid, c->slot});
            c->id = -1;
          }
        }
      }
      for (auto it = openers.rbegin(); it != openers.rend(); ++it) {  // outer open first
        Call& c = **it;
        if (c.id == 0) {
          c.id = g_next_id.fetch_add(1, std::memory_order_relaxed);
          c.start = now;
          buf->open.push_back(*it);
        }
      }
      queue = !buf->queued;
      buf->queued = true;
    }
    if (queue) {
      std::shared_ptr<ThreadBuf> keep = tl_buf;
      torch::autograd::Engine::get_default_engine().queue_callback(
          [keep]() { close_open(keep); });
    }
    return grads;
  }
};

// The boundary hook on (grad_fn, output_nr) of a non-leaf tensor, made on first use.
BoundaryHook* hook_of(const at::Tensor& t) {
  const auto& fn = t.grad_fn();
  uint32_t nr = t.output_nr();
  for (auto& h : fn->tensor_pre_hooks()) {
    auto* b = dynamic_cast<BoundaryHook*>(h.get());
    if (b != nullptr && b->output_nr == nr) return b;
  }
  auto hook = std::make_unique<BoundaryHook>(nr);
  BoundaryHook* raw = hook.get();
  fn->add_tensor_pre_hook(std::move(hook));
  return raw;
}

// entry (a module's path-cache tuple) -> slot. Entries are held, so an id is
// never reused while it is a key; distinct (path, attrs) share one slot, so
// replicas remade every step do not grow the slot table.
std::unordered_map<PyObject*, int32_t> g_slot_of;
PyObject* g_slot_by_value = nullptr;  // dict (path, attrs) -> slot
std::vector<PyObject*> g_slot_entries;  // slot -> (path, attrs)

int32_t slot_of(PyObject* entry) {
  auto it = g_slot_of.find(entry);
  if (it != g_slot_of.end()) return it->second;
  if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) < 2) {
    PyErr_SetString(PyExc_TypeError, "entry must be a (path, attrs, ...) tuple");
    return -1;
  }
  if (g_slot_of.size() > 4096) {  // a bound on held entries (replicas come and go)
    for (auto& kv : g_slot_of) Py_DECREF(kv.first);
    g_slot_of.clear();
  }
  PyObject* key = PyTuple_Pack(2, PyTuple_GET_ITEM(entry, 0), PyTuple_GET_ITEM(entry, 1));
  if (key == nullptr) return -1;
  int32_t slot;
  PyObject* found = PyDict_GetItemWithError(g_slot_by_value, key);
  if (found != nullptr) {
    slot = static_cast<int32_t>(PyLong_AsLong(found));
    Py_DECREF(key);
  } else {
    if (PyErr_Occurred()) {
      Py_DECREF(key);
      return -1;
    }
    slot = static_cast<int32_t>(g_slot_entries.size());
    PyObject* value = PyLong_FromLong(slot);
    int err = value == nullptr ? -1 : PyDict_SetItem(g_slot_by_value, key, value);
    Py_XDECREF(value);
    if (err < 0) {
      Py_DECREF(key);
      return -1;
    }
    g_slot_entries.push_back(key);  // the reference is kept
  }
  Py_INCREF(entry);
  g_slot_of.emplace(entry, slot);
  return slot;
}

inline bool grad_node(PyObject* obj) {
  if (!THPVariable_Check(obj)) return false;
  const at::Tensor& t = THPVariable_Unpack(obj);
  return t.requires_grad() && t.grad_fn() != nullptr;
}

// link(result, args, entry): the native `_link_backward` (see module.py).
PyObject* py_link(PyObject*, PyObject* const* argv, Py_ssize_t argc) {
  if (argc != 3) {
    PyErr_SetString(PyExc_TypeError, "link(result, args, entry)");
    return nullptr;
  }
  PyObject* result = argv[0];
  PyObject* args = argv[1];
  PyObject* out = result;
  if (PyTuple_Check(result)) out = PyTuple_GET_SIZE(result) ? PyTuple_GET_ITEM(result, 0) : nullptr;
  if (out == nullptr || !grad_node(out)) Py_RETURN_NONE;
  PyObject* inp = nullptr;
  if (PyTuple_Check(args)) {
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* a = PyTuple_GET_ITEM(args, i);
      if (THPVariable_Check(a)) {
        inp = a;
        break;
      }
    }
  }
  if (inp == out) Py_RETURN_NONE;  // Identity, in-place ops: no span
  int32_t slot = slot_of(argv[2]);
  if (slot < 0) return nullptr;
  try {
    auto call = std::make_shared<Call>(slot);
    hook_of(THPVariable_Unpack(out))->openers.push_back(call);
    if (inp != nullptr && grad_node(inp)) hook_of(THPVariable_Unpack(inp))->closers.push_back(call);
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* py_next_id(PyObject*, PyObject*) {
  return PyLong_FromLongLong(g_next_id.fetch_add(1, std::memory_order_relaxed));
}

PyObject* py_reset(PyObject*, PyObject*) {
  g_next_id.store(1);
  std::lock_guard<std::mutex> g(g_registry->mu);
  for (auto& b : g_registry->bufs) {
    std::lock_guard<std::mutex> gb(b->mu);
    b->closed.clear();
  }
  Py_RETURN_NONE;
}

PyObject* py_enable(PyObject*, PyObject* on) {
  int v = PyObject_IsTrue(on);
  if (v < 0) return nullptr;
  g_enabled.store(v != 0);
  Py_RETURN_NONE;
}

PyObject* py_clock_ns(PyObject*, PyObject*) {
  return PyLong_FromLongLong(now_ns());
}

// Takes the records that closed at or before `cut`; later ones wait for the next drain.
std::vector<Closed> take(int64_t cut) {
  std::vector<Closed> all;
  std::lock_guard<std::mutex> g(g_registry->mu);
  auto& bufs = g_registry->bufs;
  for (auto& b : bufs) {
    std::lock_guard<std::mutex> gb(b->mu);
    std::vector<Closed> later;
    for (const Closed& c : b->closed) (c.end <= cut ? all : later).push_back(c);
    b->closed.swap(later);
  }
  // buffers of threads that ended and hold nothing more
  for (size_t i = bufs.size(); i-- > 0;) {
    if (bufs[i].use_count() == 1 && bufs[i]->open.empty()) bufs.erase(bufs.begin() + i);
  }
  return all;
}

PyObject* py_drain(PyObject*, PyObject* const* argv, Py_ssize_t argc) {
  if (argc != 3) {
    PyErr_SetString(PyExc_TypeError, "drain(kind, func, cut_ns)");
    return nullptr;
  }
  PyObject* kind = argv[0];
  PyObject* func = argv[1];
  int64_t cut = PyLong_AsLongLong(argv[2]);
  if (cut == -1 && PyErr_Occurred()) return nullptr;
  std::vector<Closed> all;
  Py_BEGIN_ALLOW_THREADS  // the stamping threads need no GIL, but let Python run meanwhile
  all = take(cut);
  Py_END_ALLOW_THREADS
  PyObject* out = PyList_New(static_cast<Py_ssize_t>(all.size()));
  if (out == nullptr) return nullptr;
  PyObject* zero = PyLong_FromLong(0);
  for (size_t i = 0; i < all.size(); ++i) {
    const Closed& c = all[i];
    PyObject* entry = g_slot_entries[c.slot];
    PyObject* name = PyTuple_GET_ITEM(entry, 0);
    PyObject* attrs = PyTuple_GET_ITEM(entry, 1);
    Py_INCREF(zero);
    Py_INCREF(kind);
    Py_INCREF(name);
    Py_INCREF(func);
    Py_INCREF(attrs);
    PyObject* rec = PyTuple_New(9);
    if (rec == nullptr) {
      Py_DECREF(out);
      Py_DECREF(zero);
      return nullptr;
    }
    PyTuple_SET_ITEM(rec, 0, PyLong_FromLongLong(c.id));
    PyTuple_SET_ITEM(rec, 1, zero);
    PyTuple_SET_ITEM(rec, 2, PyLong_FromUnsignedLong(c.tid));
    PyTuple_SET_ITEM(rec, 3, PyLong_FromLongLong(c.start));
    PyTuple_SET_ITEM(rec, 4, PyLong_FromLongLong(c.end));
    PyTuple_SET_ITEM(rec, 5, kind);
    PyTuple_SET_ITEM(rec, 6, name);
    PyTuple_SET_ITEM(rec, 7, func);
    PyTuple_SET_ITEM(rec, 8, attrs);
    PyList_SET_ITEM(out, static_cast<Py_ssize_t>(i), rec);
  }
  Py_DECREF(zero);
  return out;
}

PyObject* py_pending(PyObject*, PyObject*) {
  size_t n = 0;
  std::lock_guard<std::mutex> g(g_registry->mu);
  for (auto& b : g_registry->bufs) {
    std::lock_guard<std::mutex> gb(b->mu);
    n += b->closed.size();
  }
  return PyLong_FromSize_t(n);
}

PyMethodDef methods[] = {
    {"link", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(py_link)), METH_FASTCALL,
     "link(result, args, entry): ties one forward call to its backward boundaries."},
    {"next_id", py_next_id, METH_NOARGS, "The next span id of this process."},
    {"reset", py_reset, METH_NOARGS, "Ids start again at 1; buffered stamps are dropped."},
    {"enable", py_enable, METH_O, "Stamps record only while enabled."},
    {"drain", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(py_drain)), METH_FASTCALL,
     "drain(kind, func, cut_ns): the records closed by cut_ns, each thread's in close order."},
    {"clock_ns", py_clock_ns, METH_NOARGS, "The stamps' clock, in nanoseconds."},
    {"pending", py_pending, METH_NOARGS, "How many records wait to be drained."},
    {nullptr, nullptr, 0, nullptr}};

#define TS_STR2(x) #x
#define TS_STR(x) TS_STR2(x)

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, TS_STR(TORCH_EXTENSION_NAME),
                          "torchscope's native boundary stamp (reimpl/_native).", -1, methods};

}  // namespace

#define TS_CONCAT2(a, b) a##b
#define TS_CONCAT(a, b) TS_CONCAT2(a, b)

PyMODINIT_FUNC TS_CONCAT(PyInit_, TORCH_EXTENSION_NAME)(void) {
  g_slot_by_value = PyDict_New();
  if (g_slot_by_value == nullptr) return nullptr;
  pthread_atfork(nullptr, nullptr, after_fork_in_child);
  return PyModule_Create(&module_def);
}
