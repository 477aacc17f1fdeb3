//! A seccomp filter for the serving process: once start-up is done, the kernel lets it make
//! only the system calls a serving fnhost needs, as Firecracker's jailer does for a VMM.
//!
//! WebAssembly already keeps a function from making system calls; this is the wall behind
//! that one. Were a guest ever to escape wasmtime's sandbox, it would find no `execve`, no
//! `fork`, no `ptrace`, no way to load kernel modules, mount, change namespaces, use BPF,
//! io_uring or `userfaultfd`, or signal another process: those (and everything not listed
//! here) fail with `EPERM`. Threads are allowed (`clone` with `CLONE_THREAD`); `clone3`,
//! whose flags a filter cannot see, answers `ENOSYS` so the C library falls back to `clone`.
//!
//! The list was taken from tracing every system call of the integration suite (strace),
//! plus what the C library's resolver, terminals and memory protection keys use. It is
//! installed on all threads at once (`SECCOMP_FILTER_FLAG_TSYNC`) and inherited by threads
//! started later. `fnhost serve --seccomp off` leaves it out, for debugging.

use std::collections::BTreeMap;

use anyhow::Context as _;

/// Installs the filter on every thread of the process. Supported on Linux x86_64 and
/// aarch64; elsewhere an error says so.
pub fn install() -> anyhow::Result<()> {
    imp::install()
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod imp {
    use super::*;
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };

    /// System calls allowed whatever their arguments.
    const ALLOWED: &[libc::c_long] = &[
        // Memory.
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mprotect,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_memfd_create,
        libc::SYS_pkey_alloc,
        libc::SYS_pkey_free,
        libc::SYS_pkey_mprotect,
        libc::SYS_membarrier,
        // Files: the data directory, compiled code, buckets, /proc/self.
        libc::SYS_openat,
        libc::SYS_close,
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
        libc::SYS_lseek,
        libc::SYS_newfstatat,
        libc::SYS_fstat,
        libc::SYS_statx,
        libc::SYS_statfs,
        libc::SYS_fstatfs,
        libc::SYS_faccessat,
        libc::SYS_faccessat2,
        libc::SYS_getdents64,
        libc::SYS_readlinkat,
        libc::SYS_getcwd,
        libc::SYS_mkdirat,
        libc::SYS_renameat,
        libc::SYS_renameat2,
        libc::SYS_unlinkat,
        libc::SYS_linkat,
        libc::SYS_fchmod,
        libc::SYS_fchmodat,
        libc::SYS_fchown,
        libc::SYS_fchownat,
        libc::SYS_ftruncate,
        libc::SYS_fallocate,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_sync_file_range,
        libc::SYS_flock,
        libc::SYS_fcntl,
        libc::SYS_dup,
        libc::SYS_dup3,
        libc::SYS_pipe2,
        libc::SYS_eventfd2,
        libc::SYS_umask,
        // Network: listening, accepting, outbound HTTP, DNS.
        libc::SYS_socketpair,
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept4,
        libc::SYS_connect,
        libc::SYS_shutdown,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_setsockopt,
        libc::SYS_getsockopt,
        libc::SYS_sendto,
        libc::SYS_recvfrom,
        libc::SYS_sendmsg,
        libc::SYS_recvmsg,
        libc::SYS_sendmmsg,
        libc::SYS_recvmmsg,
        // Waiting.
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        libc::SYS_ppoll,
        libc::SYS_pselect6,
        libc::SYS_futex,
        libc::SYS_nanosleep,
        libc::SYS_clock_nanosleep,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_gettimeofday,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_restart_syscall,
        // Threads and signals.
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_set_robust_list,
        libc::SYS_get_robust_list,
        libc::SYS_rseq,
        libc::SYS_set_tid_address,
        libc::SYS_sigaltstack,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_gettid,
        libc::SYS_getpid,
        libc::SYS_getppid,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        // Identity and resources.
        libc::SYS_getrandom,
        libc::SYS_uname,
        libc::SYS_prlimit64,
        libc::SYS_getrusage,
        libc::SYS_sysinfo,
    ];

    /// Calls that only older x86_64 binaries and libraries make.
    #[cfg(target_arch = "x86_64")]
    const ALLOWED_X86_64: &[libc::c_long] = &[
        libc::SYS_open,
        libc::SYS_stat,
        libc::SYS_lstat,
        libc::SYS_access,
        libc::SYS_readlink,
        libc::SYS_mkdir,
        libc::SYS_rename,
        libc::SYS_unlink,
        libc::SYS_chmod,
        libc::SYS_poll,
        libc::SYS_select,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_create,
        libc::SYS_pipe,
        libc::SYS_dup2,
        libc::SYS_arch_prctl,
        libc::SYS_time,
    ];
    #[cfg(not(target_arch = "x86_64"))]
    const ALLOWED_X86_64: &[libc::c_long] = &[];

    fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> anyhow::Result<SeccompCondition> {
        Ok(SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Qword,
            op,
            value,
        )?)
    }

    fn rule(conditions: Vec<SeccompCondition>) -> anyhow::Result<SeccompRule> {
        Ok(SeccompRule::new(conditions)?)
    }

    /// The allow list with argument checks.
    fn allow_rules(pid: u64) -> anyhow::Result<BTreeMap<i64, Vec<SeccompRule>>> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
            .iter()
            .chain(ALLOWED_X86_64)
            .map(|&n| (n, Vec::new()))
            .collect();
        let eq = |arg, value: i64| condition(arg, SeccompCmpOp::Eq, value as u64);
        // Threads only: a clone without CLONE_THREAD would be a new process.
        let thread = libc::CLONE_THREAD as u64;
        rules.insert(
            libc::SYS_clone,
            vec![rule(vec![condition(
                0,
                SeccompCmpOp::MaskedEq(thread),
                thread,
            )?])?],
        );
        // Decided by the second filter (ENOSYS); allowed here so this one does not refuse it.
        rules.insert(libc::SYS_clone3, Vec::new());
        // Sockets of the families fnhost uses (netlink: the resolver's interface query).
        rules.insert(
            libc::SYS_socket,
            [
                libc::AF_UNIX,
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_NETLINK,
            ]
            .into_iter()
            .map(|family| rule(vec![eq(0, family.into())?]))
            .collect::<anyhow::Result<_>>()?,
        );
        // ioctl: non-blocking and close-on-exec flags, terminal queries for log colours,
        // and PAGEMAP_SCAN (the pooling allocator's reset of dirty pages).
        const PAGEMAP_SCAN: i64 = 0xc060_6610;
        rules.insert(
            libc::SYS_ioctl,
            [
                libc::FIONBIO as i64,
                libc::FIOCLEX as i64,
                libc::FIONCLEX as i64,
                libc::TCGETS as i64,
                libc::TIOCGWINSZ as i64,
                PAGEMAP_SCAN,
            ]
            .into_iter()
            .map(|request| rule(vec![eq(1, request)?]))
            .collect::<anyhow::Result<_>>()?,
        );
        // prctl: naming threads only.
        rules.insert(
            libc::SYS_prctl,
            [libc::PR_SET_NAME, libc::PR_GET_NAME]
                .into_iter()
                .map(|option| rule(vec![eq(0, option.into())?]))
                .collect::<anyhow::Result<_>>()?,
        );
        // Signals to this process only (abort, thread wake-ups), never to another.
        rules.insert(libc::SYS_tgkill, vec![rule(vec![eq(0, pid as i64)?])?]);
        rules.insert(libc::SYS_kill, vec![rule(vec![eq(0, pid as i64)?])?]);
        Ok(rules)
    }

    fn arch() -> TargetArch {
        if cfg!(target_arch = "x86_64") {
            TargetArch::x86_64
        } else {
            TargetArch::aarch64
        }
    }

    pub fn install() -> anyhow::Result<()> {
        let pid = u64::from(std::process::id());
        let allow = SeccompFilter::new(
            allow_rules(pid)?,
            SeccompAction::Errno(libc::EPERM as u32),
            SeccompAction::Allow,
            arch(),
        )?;
        // Of several filters the kernel applies the strictest answer: ENOSYS for clone3.
        let no_clone3 = SeccompFilter::new(
            [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch(),
        )?;
        // The allow list last: installing a filter needs prctl and seccomp, which it refuses.
        for filter in [no_clone3, allow] {
            let program: seccompiler::BpfProgram =
                filter.try_into().context("compiling the seccomp filter")?;
            seccompiler::apply_filter_all_threads(&program)
                .context("installing the seccomp filter (run with --seccomp off to skip it)")?;
        }
        Ok(())
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod imp {
    pub fn install() -> anyhow::Result<()> {
        anyhow::bail!(
            "the seccomp filter is available on Linux x86_64 and aarch64 only; run with \
             --seccomp off"
        )
    }
}

#[cfg(all(
    test,
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod tests {
    /// Runs in a child process (the filter cannot be removed once installed): what a
    /// serving host does still works; what it must never do fails.
    #[test]
    fn the_filter_allows_serving_and_refuses_the_rest() {
        if std::env::var_os("FNHOST_SECCOMP_CHILD").is_some() {
            return in_the_child();
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "seccomp::tests::the_filter_allows_serving_and_refuses_the_rest",
                "--nocapture",
            ])
            .env("FNHOST_SECCOMP_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{text}");
        assert!(text.contains("child checks passed"), "{text}");
    }

    fn in_the_child() {
        let dir = tempfile::tempdir().unwrap();
        super::install().unwrap();
        // Allowed: files, threads, sockets, a runtime.
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"x");
        std::thread::spawn(|| 1 + 1).join().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        drop((listener, stream));
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { tokio::task::spawn_blocking(|| 2).await.unwrap() });
        // Refused: starting programs, new processes, raw sockets.
        let error = std::process::Command::new("/bin/true")
            .status()
            .unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EPERM), "{error}");
        let pid = unsafe { libc::fork() };
        assert_eq!(pid, -1, "fork must fail");
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EPERM)
        );
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert_eq!(raw, -1);
        assert_eq!(
            unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) },
            -1
        );
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOSYS)
        );
        println!("child checks passed");
    }
}
