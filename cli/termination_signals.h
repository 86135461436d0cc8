// SIGTERM/SIGINT handling for long-running subcommands: the signals are blocked in every
// thread (call before starting any) and taken synchronously, so shutdown runs outside a
// signal handler.
#pragma once

#include <csignal>

namespace xlserve::cli {

inline sigset_t BlockTerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// Waits for SIGTERM or SIGINT; returns its number.
inline int WaitForTerminationSignal(const sigset_t& signals) {
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  return signal_number;
}

}  // namespace xlserve::cli
