// Makes ThreadSanitizer see Abseil's synchronization. Debian's Abseil is a prebuilt
// shared library without TSan instrumentation, so absl::Mutex, CondVar and
// Notification establish no happens-before for TSan and every datum they guard is
// reported as a race. Under -fsanitize=thread this file interposes their entry points
// (the executable's definitions win over the library's), calls the real ones through
// dlsym(RTLD_NEXT), and adds __tsan_acquire / __tsan_release on the object's address:
// lock = acquire, unlock = release, a wait releases before and acquires after, and a
// Condition is re-wrapped so that its evaluation (after the library re-locks, or by
// the unlocking thread on a waiter's behalf) happens after an acquire. Interceptors
// (memmove, ...) called from inside those libraries are suppressed, see below.
//
// Without -fsanitize=thread this file compiles to nothing.
#if defined(__SANITIZE_THREAD__)

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

template <typename F>
F Real(const char* symbol) {
  void* p = ::dlsym(RTLD_NEXT, symbol);
  if (p == nullptr) {
    std::fprintf(stderr, "tsan_absl_sync: %s not found: %s\n", symbol, ::dlerror());
    std::abort();
  }
  return reinterpret_cast<F>(p);
}

struct WrappedCondition {
  const absl::Condition* original;
  void* mutex;
};

// The library may evaluate a waiter's condition on the thread that unlocks, reading
// the waiter's stack (the wrapper below, the lambda's captures) and the guarded data.
// So: see the waiter's wrapper (released by the waiter), see the guarded data
// (released by every unlock), and afterwards publish what the evaluation read, so that
// the waiter's later writes to its stack are ordered after it.
bool EvalAfterAcquire(void* arg) {
  __tsan_acquire(arg);
  auto* w = static_cast<WrappedCondition*>(arg);
  __tsan_acquire(w->mutex);
  const bool result = w->original->Eval();
  __tsan_release(w->mutex);
  return result;
}

}  // namespace

// The library's own internal locking (the deadlock detector's lock-order graph, behind
// a spinlock) is invisible too, but the memmove / memcpy it does are intercepted: so
// interceptors called from inside Abseil's synchronization are not checked.
extern "C" const char* __tsan_default_suppressions() {
  return "called_from_lib:libabsl_graphcycles_internal.so\n"
         "called_from_lib:libabsl_synchronization.so\n";
}

#define ISLET_REAL(type, symbol) static const auto real = Real<type>(symbol)

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  ISLET_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex4LockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::Unlock() {
  ISLET_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex6UnlockEv");
  __tsan_release(this);
  real(this);
}

bool Mutex::TryLock() {
  ISLET_REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::ReaderLock() {
  ISLET_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::ReaderUnlock() {
  ISLET_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  __tsan_release(this);
  real(this);
}

bool Mutex::ReaderTryLock() {
  ISLET_REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::Await(const Condition& cond) {
  ISLET_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  WrappedCondition w{&cond, this};
  const Condition wrapped(&EvalAfterAcquire, &w);
  __tsan_release(&w);
  __tsan_release(this);
  real(this, wrapped);
  __tsan_acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  ISLET_REAL(bool (*)(Mutex*, const Condition&, absl::Duration),
             "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  WrappedCondition w{&cond, this};
  const Condition wrapped(&EvalAfterAcquire, &w);
  __tsan_release(&w);
  __tsan_release(this);
  const bool result = real(this, wrapped, timeout);
  __tsan_acquire(this);
  return result;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  ISLET_REAL(bool (*)(Mutex*, const Condition&, absl::Time),
             "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  WrappedCondition w{&cond, this};
  const Condition wrapped(&EvalAfterAcquire, &w);
  __tsan_release(&w);
  __tsan_release(this);
  const bool result = real(this, wrapped, deadline);
  __tsan_acquire(this);
  return result;
}

void Mutex::LockWhen(const Condition& cond) {
  ISLET_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  WrappedCondition w{&cond, this};
  const Condition wrapped(&EvalAfterAcquire, &w);
  __tsan_release(&w);
  real(this, wrapped);
  __tsan_acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  ISLET_REAL(bool (*)(Mutex*, const Condition&, absl::Duration),
             "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  WrappedCondition w{&cond, this};
  const Condition wrapped(&EvalAfterAcquire, &w);
  __tsan_release(&w);
  const bool result = real(this, wrapped, timeout);
  __tsan_acquire(this);
  return result;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  ISLET_REAL(bool (*)(Mutex*, const Condition&, absl::Time),
             "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  WrappedCondition w{&cond, this};
  const Condition wrapped(&EvalAfterAcquire, &w);
  __tsan_release(&w);
  const bool result = real(this, wrapped, deadline);
  __tsan_acquire(this);
  return result;
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  ISLET_REAL(void (*)(Mutex*, const Condition&),
             "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  WrappedCondition w{&cond, this};
  const Condition wrapped(&EvalAfterAcquire, &w);
  __tsan_release(&w);
  real(this, wrapped);
  __tsan_acquire(this);
}

void CondVar::Wait(Mutex* mu) {
  ISLET_REAL(void (*)(CondVar*, Mutex*), "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  ISLET_REAL(bool (*)(CondVar*, Mutex*, absl::Duration),
             "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_release(mu);
  const bool result = real(this, mu, timeout);
  __tsan_acquire(mu);
  return result;
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  ISLET_REAL(bool (*)(CondVar*, Mutex*, absl::Time),
             "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_release(mu);
  const bool result = real(this, mu, deadline);
  __tsan_acquire(mu);
  return result;
}

void Notification::Notify() {
  ISLET_REAL(void (*)(Notification*), "_ZN4absl7debian312Notification6NotifyEv");
  __tsan_release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  ISLET_REAL(void (*)(const Notification*),
             "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(absl::Duration timeout) const {
  ISLET_REAL(bool (*)(const Notification*, absl::Duration),
             "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  ISLET_REAL(bool (*)(const Notification*, absl::Time),
             "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl

#endif  // defined(__SANITIZE_THREAD__)
