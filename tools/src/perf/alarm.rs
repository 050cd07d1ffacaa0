//! A one-shot wake-up with nanosecond resolution for a socket task: a `timerfd` (through rustix's
//! safe API) registered with the thread's tokio reactor. tokio's own timers round up to the next
//! whole millisecond, so an open loop sleeping on them would send every request up to 1 ms after
//! its intended time — and, measuring from the intended time, report that lateness as latency.
//! Owned by one socket task; re-armed only when the wanted time changes. Registering the timerfd
//! with tokio is the one `unsafe` call of the generator (tokio cannot check that a raw
//! descriptor stays valid; an `OwnedFd` it owns does).

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// A one-shot timer on the monotonic clock (the clock `Instant` reads on Linux).
#[derive(Debug)]
pub struct Alarm {
    fd: AsyncFd<OwnedFd>,
    armed: Option<Instant>,
}

impl Alarm {
    /// A disarmed alarm. Must be called inside a tokio runtime.
    pub fn new() -> io::Result<Alarm> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: `fd` is an `OwnedFd` just returned by `timerfd_create`, so it is open and valid;
        // the `AsyncFd` takes ownership of it and nothing else can close or replace it, and
        // `OwnedFd::as_raw_fd` always returns that same descriptor. (The tests below register
        // and use alarms.)
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register(fd)? };
        Ok(Alarm { fd, armed: None })
    }

    /// Rings at `at` (at once if it has passed), or never for `None`. Setting the time it is
    /// already set to costs nothing.
    pub fn set(&mut self, at: Option<Instant>) -> io::Result<()> {
        if self.armed == at {
            return Ok(());
        }
        let value = match at {
            // A zero value disarms a timerfd: a time already passed rings after 1 ns instead.
            Some(at) => at
                .saturating_duration_since(Instant::now())
                .max(Duration::from_nanos(1)),
            None => Duration::ZERO,
        };
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: value.as_secs() as i64,
                tv_nsec: i64::from(value.subsec_nanos()),
            },
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
        self.armed = at;
        Ok(())
    }

    /// Waits until the alarm rings, then disarms it.
    pub async fn rung(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match guard.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expirations)?)) {
                Ok(Ok(_)) => {
                    self.armed = None;
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e),
                // Re-armed since it became readable: wait again.
                Err(_would_block) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn it_rings_not_before_its_time() {
        runtime().block_on(async {
            let mut alarm = Alarm::new().unwrap();
            let at = Instant::now() + Duration::from_micros(300);
            alarm.set(Some(at)).unwrap();
            alarm.rung().await.unwrap();
            assert!(Instant::now() >= at);
        });
    }

    #[test]
    fn a_passed_time_rings_at_once_and_rearming_moves_it() {
        runtime().block_on(async {
            let mut alarm = Alarm::new().unwrap();
            alarm
                .set(Some(Instant::now() - Duration::from_secs(1)))
                .unwrap();
            alarm.rung().await.unwrap();
            // Moved far away and then near: the near time wins.
            alarm
                .set(Some(Instant::now() + Duration::from_secs(3600)))
                .unwrap();
            let near = Instant::now() + Duration::from_millis(1);
            alarm.set(Some(near)).unwrap();
            alarm.rung().await.unwrap();
            assert!(Instant::now() >= near);
        });
    }

    #[test]
    fn a_disarmed_alarm_stays_silent() {
        runtime().block_on(async {
            let mut alarm = Alarm::new().unwrap();
            alarm
                .set(Some(Instant::now() + Duration::from_millis(1)))
                .unwrap();
            alarm.set(None).unwrap();
            let silent = tokio::time::timeout(Duration::from_millis(20), alarm.rung()).await;
            assert!(silent.is_err());
        });
    }
}
