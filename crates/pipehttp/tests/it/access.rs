//! The access options (`allow_users`, `allow_groups`, `pipe_sddl`) as the
//! config files spell them, and the option combinations a bind refuses.
//! Serving other users and groups is tested with real accounts in the CLI
//! crate's `access` suite; the Windows descriptors in `windows`.

use pipehttp::{Config, Server};

#[test]
fn toml_reads_the_allow_lists_and_the_descriptor() {
    let config = Config::from_toml_str(
        "[pipes]\nallow_users = [\"alice\", 1001]\nallow_groups = [\"docker\"]\n",
        "app.toml",
    )
    .unwrap();
    assert_eq!(config.options.pipes.allow_users, ["alice", "1001"]);
    assert_eq!(config.options.pipes.allow_groups, ["docker"]);
    let config =
        Config::from_toml_str("[pipes]\npipe_sddl = \"D:P(A;;GA;;;OW)\"\n", "app.toml").unwrap();
    assert_eq!(
        config.options.pipes.pipe_sddl.as_deref(),
        Some("D:P(A;;GA;;;OW)")
    );
}

#[test]
fn kestrel_json_reads_them_under_named_pipes() {
    let config = Config::from_json_str(
        r#"{ "Kestrel": { "NamedPipes": { "AllowUsers": ["bob"], "AllowGroups": ["adm", 4] } } }"#,
        "appsettings.json",
    )
    .unwrap();
    assert_eq!(config.options.pipes.allow_users, ["bob"]);
    assert_eq!(config.options.pipes.allow_groups, ["adm", "4"]);
    assert_eq!(config.options.pipes.pipe_sddl, None);
}

#[test]
fn a_list_that_is_not_one_is_named_with_the_expected_form() {
    let err =
        Config::from_toml_str("[pipes]\nallow_groups = \"docker\"\n", "app.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "app.toml: `pipes.allow_groups` is \"docker\": expected an array of names or numeric ids, such as [\"alice\", 1001]"
    );
    let err = Config::from_json_str(
        r#"{ "Kestrel": { "NamedPipes": { "AllowUsers": [""] } } }"#,
        "appsettings.json",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "appsettings.json: `Kestrel:NamedPipes:AllowUsers:0` is \"\": expected a name or numeric id"
    );
}

#[test]
fn allow_lists_with_current_user_only_off_are_refused_where_they_are_read() {
    let err = Config::from_toml_str(
        "[pipes]\ncurrent_user_only = false\nallow_users = [\"alice\"]\n",
        "app.toml",
    )
    .unwrap_err();
    assert!(err.is_config(), "{err:?}");
    assert!(
        err.to_string().contains("need current_user_only = true"),
        "{err}"
    );
}

#[tokio::test]
async fn contradicting_access_options_fail_the_bind_and_say_why() {
    let url = format!("http://pipe:/{}", testkit::unique_name("contra"));
    let cases = [
        (
            Server::builder()
                .current_user_only(false)
                .allow_user("root"),
            "need current_user_only = true",
        ),
        (
            Server::builder()
                .allow_group("root")
                .pipe_sddl(Some("D:P(A;;GA;;;OW)".into())),
            "pipe_sddl sets the whole descriptor",
        ),
        (
            Server::builder().allow_group("root").mode(Some(0o666)),
            "leave mode unset",
        ),
    ];
    for (builder, expected) in cases {
        let err = builder.listen(url.as_str()).bind().await.unwrap_err();
        assert!(err.is_builder(), "{err:?}");
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn unknown_accounts_and_a_windows_descriptor_name_the_pipe() {
    let name = testkit::unique_name("unknown");
    let url = format!("http://pipe:/{name}");
    let cases = [
        (
            Server::builder().allow_group("no-such-group-here"),
            "allow_groups: there is no group 'no-such-group-here' on this system",
        ),
        (
            Server::builder().allow_user("no-such-user-here"),
            "allow_users: there is no user 'no-such-user-here' on this system",
        ),
        (
            Server::builder().pipe_sddl(Some("D:P(A;;GA;;;OW)".into())),
            "pipe_sddl is a Windows security descriptor",
        ),
    ];
    for (builder, expected) in cases {
        let err = builder.listen(url.as_str()).bind().await.unwrap_err();
        let text = err.to_string();
        assert!(err.is_builder(), "{err:?}");
        assert!(text.starts_with(&format!("pipe '{name}'")), "{text}");
        assert!(text.contains(expected), "{text}");
    }
}
