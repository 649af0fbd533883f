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
//   Forward(...)                records module.forward spans (below)
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

// Ties one forward call to the tensors that bound its backward: the native
// `_link_backward` (see module.py). `inputs`: the call's positional arguments.
// Returns -1 with an exception set.
int link_impl(PyObject* result, PyObject* const* inputs, Py_ssize_t n, PyObject* entry) {
  PyObject* out = result;
  if (PyTuple_Check(result)) out = PyTuple_GET_SIZE(result) ? PyTuple_GET_ITEM(result, 0) : nullptr;
  if (out == nullptr || !grad_node(out)) return 0;
  PyObject* inp = nullptr;
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (THPVariable_Check(inputs[i])) {
      inp = inputs[i];
      break;
    }
  }
  if (inp == out) return 0;  // Identity, in-place ops: no span
  int32_t slot = slot_of(entry);
  if (slot < 0) return -1;
  try {
    auto call = std::make_shared<Call>(slot);
    hook_of(THPVariable_Unpack(out))->openers.push_back(call);
    if (inp != nullptr && grad_node(inp)) hook_of(THPVariable_Unpack(inp))->closers.push_back(call);
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return -1;
  }
  return 0;
}

// link(result, args, entry): from forward, entry = (path, attrs, ...).
PyObject* py_link(PyObject*, PyObject* const* argv, Py_ssize_t argc) {
  if (argc != 3) {
    PyErr_SetString(PyExc_TypeError, "link(result, args, entry)");
    return nullptr;
  }
  PyObject* args = argv[1];
  PyObject* const* inputs = PyTuple_Check(args) ? &PyTuple_GET_ITEM(args, 0) : nullptr;
  Py_ssize_t n = PyTuple_Check(args) ? PyTuple_GET_SIZE(args) : 0;
  if (link_impl(argv[0], inputs, n, argv[2]) < 0) return nullptr;
  Py_RETURN_NONE;
}

// ---------------------------------------------------------------------------
// Forward spans. A traced module call costs a dozen Python operations around
// the forward (path lookup, id, two clock reads, the record tuple, the append,
// the backward link): about 1.5-3 us a module in a real step, though each is
// tens of ns alone. `Forward` does the same in one C call. Two forms:
//  * Forward(..., wrapped=None)(sink, module, forward_call, args, kwargs): the
//    recorded part of reimpl's `_call_impl` (module.py `_record_forward_py`);
//  * Forward(..., wrapped=call_impl, fallback=f): a method that replaces torch's
//    `Module._call_impl` for a run (tracer/targets/torch/modules.py).
// Ids come from this module's counter, so it serves only a sink that draws its
// ids from `next_id` (a recorder draining these stamps, `reimpl._trace.stamps`):
// reimpl's form is chosen per attach; torch's form calls `fallback` (the Python
// wrapper) while no such sink is attached.

PyObject* s_sink;
PyObject* s_stamps;
PyObject* s_backward_spans;
PyObject* s_path_cache;
PyObject* s_cache_generation;
PyObject* s_generation;
PyObject* s_append;
PyObject* s_kind_forward;

struct Forward {
  PyObject_HEAD
  PyObject* trace;  // reimpl._trace.__dict__: sink, backward_spans
  PyObject* cache;  // module.py's __dict__: _path_cache, _cache_generation
  PyObject* hooks;  // reimpl.utils.hooks.__dict__: generation
  PyObject* lookup;  // lookup(module) -> entry, when the cache misses or is stale
  PyObject* failed;  // failed(sink, id, start, entry, exc): a forward that raised
  PyObject* func;  // the function the spans name
  PyObject* wrapped;  // torch's _call_impl, or nullptr (reimpl's form)
  PyObject* fallback;  // torch's form: called instead while the sink draws no ids from here
  int link;  // tie calls to their backward boundaries (when backward_spans)
  vectorcallfunc vectorcall;
};

// The module's cache entry (a new reference), as module.py's lookup would find it.
PyObject* entry_of(Forward* f, PyObject* module) {
  PyObject* gen = PyDict_GetItemWithError(f->cache, s_cache_generation);
  PyObject* now = gen ? PyDict_GetItemWithError(f->hooks, s_generation) : nullptr;
  if (gen == nullptr || now == nullptr) {
    if (PyErr_Occurred()) return nullptr;
  } else {
    int fresh = gen == now ? 1 : PyObject_RichCompareBool(gen, now, Py_EQ);
    if (fresh < 0) return nullptr;
    PyObject* table = fresh ? PyDict_GetItemWithError(f->cache, s_path_cache) : nullptr;
    if (table != nullptr && PyDict_Check(table)) {
      PyObject* key = PyLong_FromVoidPtr(module);  // id(module)
      if (key == nullptr) return nullptr;
      PyObject* entry = PyDict_GetItemWithError(table, key);
      Py_DECREF(key);
      if (entry != nullptr && PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) >= 2) {
        Py_INCREF(entry);
        return entry;
      }
    }
    if (PyErr_Occurred()) return nullptr;
  }
  PyObject* entry = PyObject_CallOneArg(f->lookup, module);
  if (entry != nullptr && !(PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) >= 2)) {
    Py_DECREF(entry);
    PyErr_SetString(PyExc_TypeError, "lookup(module) must return a (path, attrs, ...) tuple");
    return nullptr;
  }
  return entry;
}

// Records one module call around `invoke()`; inputs: its positional arguments.
template <typename Invoke>
PyObject* record_call(Forward* f, PyObject* sink, PyObject* module, PyObject* const* inputs,
                      Py_ssize_t n, Invoke invoke) {
  PyObject* entry = entry_of(f, module);
  if (entry == nullptr) return nullptr;
  int64_t sid = g_next_id.fetch_add(1, std::memory_order_relaxed);
  int64_t t0 = now_ns();
  PyObject* result = invoke();
  if (result == nullptr) {  // close the span with the error, then let it go on
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != nullptr) PyException_SetTraceback(value, tb);
    PyObject* sid_obj = PyLong_FromLongLong(sid);
    PyObject* t0_obj = PyLong_FromLongLong(t0);
    if (sid_obj != nullptr && t0_obj != nullptr) {
      PyObject* fargs[5] = {sink, sid_obj, t0_obj, entry, value ? value : Py_None};
      PyObject* done = PyObject_Vectorcall(f->failed, fargs, 5, nullptr);
      if (done == nullptr) PyErr_WriteUnraisable(f->failed);
      Py_XDECREF(done);
    } else {
      PyErr_Clear();
    }
    Py_XDECREF(sid_obj);
    Py_XDECREF(t0_obj);
    Py_DECREF(entry);
    PyErr_Restore(type, value, tb);
    return nullptr;
  }
  int64_t t1 = now_ns();
  PyObject* rec = PyTuple_New(9);
  if (rec == nullptr) goto fail;
  PyTuple_SET_ITEM(rec, 0, PyLong_FromLongLong(sid));
  PyTuple_SET_ITEM(rec, 1, PyLong_FromLong(0));
  PyTuple_SET_ITEM(rec, 2, PyLong_FromUnsignedLong(thread_ident()));
  PyTuple_SET_ITEM(rec, 3, PyLong_FromLongLong(t0));
  PyTuple_SET_ITEM(rec, 4, PyLong_FromLongLong(t1));
  Py_INCREF(s_kind_forward);
  PyTuple_SET_ITEM(rec, 5, s_kind_forward);
  Py_INCREF(PyTuple_GET_ITEM(entry, 0));
  PyTuple_SET_ITEM(rec, 6, PyTuple_GET_ITEM(entry, 0));
  Py_INCREF(f->func);
  PyTuple_SET_ITEM(rec, 7, f->func);
  Py_INCREF(PyTuple_GET_ITEM(entry, 1));
  PyTuple_SET_ITEM(rec, 8, PyTuple_GET_ITEM(entry, 1));
  for (int i = 0; i < 5; ++i) {
    if (PyTuple_GET_ITEM(rec, i) == nullptr) {
      Py_DECREF(rec);
      goto fail;
    }
  }
  // Shared attribute pairs (str/int values, see reimpl/_trace.py) make no cycle:
  // the record leaves the cyclic GC now instead of at its first collection.
  if (PyTuple_CheckExact(PyTuple_GET_ITEM(entry, 1))) PyObject_GC_UnTrack(rec);
  {
    PyObject* append = PyObject_GetAttr(sink, s_append);
    PyObject* done = append ? PyObject_CallOneArg(append, rec) : nullptr;
    Py_XDECREF(append);
    Py_DECREF(rec);
    if (done == nullptr) goto fail;
    Py_DECREF(done);
  }
  if (f->link) {
    PyObject* flag = PyDict_GetItemWithError(f->trace, s_backward_spans);
    int on = flag == Py_True   ? 1
             : flag != nullptr ? PyObject_IsTrue(flag)
             : PyErr_Occurred() ? -1
                                : 0;
    if (on < 0 || (on && link_impl(result, inputs, n, entry) < 0)) goto fail;
  }
  Py_DECREF(entry);
  return result;
fail:
  Py_DECREF(entry);
  Py_DECREF(result);
  return nullptr;
}

// reimpl's form: (sink, module, forward_call, args, kwargs).
PyObject* forward_reimpl(Forward* f, PyObject* const* argv, Py_ssize_t argc) {
  if (argc != 5 || !PyTuple_Check(argv[3]) || !(argv[4] == Py_None || PyDict_Check(argv[4]))) {
    PyErr_SetString(PyExc_TypeError, "Forward(sink, module, forward_call, args: tuple, kwargs: dict)");
    return nullptr;
  }
  PyObject* args = argv[3];
  PyObject* kwargs = argv[4] == Py_None ? nullptr : argv[4];
  PyObject* forward_call = argv[2];
  return record_call(f, argv[0], argv[1], &PyTuple_GET_ITEM(args, 0), PyTuple_GET_SIZE(args),
                     [&]() { return PyObject_Call(forward_call, args, kwargs); });
}

PyObject* forward_vectorcall(PyObject* self, PyObject* const* args, size_t nargsf,
                             PyObject* kwnames) {
  Forward* f = reinterpret_cast<Forward*>(self);
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (f->wrapped == nullptr) {
    if (kwnames != nullptr && PyTuple_GET_SIZE(kwnames) > 0) {
      PyErr_SetString(PyExc_TypeError, "Forward takes positional arguments only");
      return nullptr;
    }
    return forward_reimpl(f, args, nargs);
  }
  // torch's form: a method replacing Module._call_impl, called as (module, *args, **kwargs)
  PyObject* sink = PyDict_GetItemWithError(f->trace, s_sink);
  if (sink == nullptr || sink == Py_None || nargs < 1) {
    if (PyErr_Occurred()) return nullptr;
    return PyObject_Vectorcall(f->wrapped, args, nargsf, kwnames);
  }
  if (f->fallback != nullptr) {  // ids must come from our counter: a sink draining the stamps
    PyObject* stamps = PyDict_GetItemWithError(f->trace, s_stamps);
    if (stamps == nullptr || stamps == Py_None) {
      if (PyErr_Occurred()) return nullptr;
      return PyObject_Vectorcall(f->fallback, args, nargsf, kwnames);
    }
  }
  Py_INCREF(sink);  // the call may detach it
  PyObject* wrapped = f->wrapped;
  PyObject* result = record_call(f, sink, args[0], args + 1, nargs - 1, [&]() {
    return PyObject_Vectorcall(wrapped, args, nargsf, kwnames);
  });
  Py_DECREF(sink);
  return result;
}

PyObject* forward_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* names[] = {"trace", "cache", "hooks", "lookup", "failed", "func",
                                "wrapped", "fallback", "link", nullptr};
  PyObject *trace, *cache, *hooks, *lookup, *failed, *func, *wrapped = Py_None, *fallback = Py_None;
  int link = 1;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!OOU|O$Op:Forward",
                                   const_cast<char**>(names), &PyDict_Type, &trace, &PyDict_Type,
                                   &cache, &PyDict_Type, &hooks, &lookup, &failed, &func, &wrapped,
                                   &fallback, &link))
    return nullptr;
  Forward* f = reinterpret_cast<Forward*>(type->tp_alloc(type, 0));
  if (f == nullptr) return nullptr;
  PyObject* held[] = {trace, cache, hooks, lookup, failed, func};
  for (PyObject* o : held) Py_INCREF(o);
  f->trace = trace;
  f->cache = cache;
  f->hooks = hooks;
  f->lookup = lookup;
  f->failed = failed;
  f->func = func;
  f->wrapped = wrapped == Py_None ? nullptr : (Py_INCREF(wrapped), wrapped);
  f->fallback = fallback == Py_None ? nullptr : (Py_INCREF(fallback), fallback);
  f->link = link;
  f->vectorcall = forward_vectorcall;
  return reinterpret_cast<PyObject*>(f);
}

void forward_dealloc(PyObject* self) {
  Forward* f = reinterpret_cast<Forward*>(self);
  Py_XDECREF(f->trace);
  Py_XDECREF(f->cache);
  Py_XDECREF(f->hooks);
  Py_XDECREF(f->lookup);
  Py_XDECREF(f->failed);
  Py_XDECREF(f->func);
  Py_XDECREF(f->wrapped);
  Py_XDECREF(f->fallback);
  Py_TYPE(self)->tp_free(self);
}

// Bound as a method when it replaces Module._call_impl (module._call_impl(...)).
PyObject* forward_get(PyObject* self, PyObject* obj, PyObject*) {
  if (obj == nullptr || obj == Py_None || reinterpret_cast<Forward*>(self)->wrapped == nullptr) {
    Py_INCREF(self);
    return self;
  }
  return PyMethod_New(self, obj);
}

PyObject* forward_wrapped(PyObject* self, void*) {
  PyObject* w = reinterpret_cast<Forward*>(self)->wrapped;
  if (w == nullptr) w = Py_None;
  Py_INCREF(w);
  return w;
}

PyGetSetDef forward_getset[] = {
    {"__wrapped__", forward_wrapped, nullptr, "The function this one records around.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyTypeObject ForwardType = {PyVarObject_HEAD_INIT(nullptr, 0)};

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
  s_sink = PyUnicode_InternFromString("sink");
  s_stamps = PyUnicode_InternFromString("stamps");
  s_backward_spans = PyUnicode_InternFromString("backward_spans");
  s_path_cache = PyUnicode_InternFromString("_path_cache");
  s_cache_generation = PyUnicode_InternFromString("_cache_generation");
  s_generation = PyUnicode_InternFromString("generation");
  s_append = PyUnicode_InternFromString("append");
  s_kind_forward = PyUnicode_InternFromString("module.forward");
  ForwardType.tp_name = TS_STR(TORCH_EXTENSION_NAME) ".Forward";
  ForwardType.tp_basicsize = sizeof(Forward);
  ForwardType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR;
  ForwardType.tp_doc = "Records module.forward spans around module calls (see boundary.cpp).";
  ForwardType.tp_new = forward_new;
  ForwardType.tp_dealloc = forward_dealloc;
  ForwardType.tp_call = PyVectorcall_Call;
  ForwardType.tp_vectorcall_offset = offsetof(Forward, vectorcall);
  ForwardType.tp_descr_get = forward_get;
  ForwardType.tp_getset = forward_getset;
  if (PyType_Ready(&ForwardType) < 0) return nullptr;
  pthread_atfork(nullptr, nullptr, after_fork_in_child);
  PyObject* m = PyModule_Create(&module_def);
  if (m == nullptr) return nullptr;
  Py_INCREF(&ForwardType);
  if (PyModule_AddObject(m, "Forward", reinterpret_cast<PyObject*>(&ForwardType)) < 0) {
    Py_DECREF(&ForwardType);
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
