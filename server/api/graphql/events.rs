//! Events in the API: the `Event` interface, the fields every event has, and an object
//! type per tracker (`ProcessEvent`, `TcpEvent`, ...) that adds its catalog fields, typed
//! and camelCased (`bytes_sent` is `bytesSent`), so that `... on TcpEvent { daddr dport
//! bytesSent }` needs no `data` JSON. The per-tracker types are made from the catalog
//! when the schema is built: a new tracker gets its type without a line here.
//!
//! A tracker field whose camelCased name is taken by a common field (ipc's `id`) is
//! prefixed with the tracker's name (`ipcId`). Fields people read by name get a `…Text`
//! field beside the number, as JSON Lines has `<field>_text`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use async_graphql::parser::types::Field;
use async_graphql::registry::{MetaType, MetaTypeId, Registry};
use async_graphql::resolver_utils::{resolve_container, ContainerType};
use async_graphql::{
    Context, ContextSelectionSet, Json, Object, OutputType, Positioned, ServerError, ServerResult,
    SimpleObject, Value, ID,
};

use crate::model::{rfc3339_nanos, FieldInfo, FieldType, TrackerInfo, COMMON_FIELDS};
use crate::results::query::StoredEvent;
use crate::trackers::TRACKERS;

/// One event, typed as its tracker's object.
pub struct EventObject(pub StoredEvent);

/// The interface's fields, with their resolvers: the derived object whose metadata and
/// resolvers every event type reuses. Not a type of the schema itself.
struct CommonFields<'a>(&'a StoredEvent);

const COMMON_TYPE: &str = "EventCommonFields";

#[Object(name = "EventCommonFields")]
impl CommonFields<'_> {
    /// Increases with arrival; the cursor of `events(after:)`.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The event's number in its session: 1, 2, 3 ... in the order the session saw its
    /// events (numbers of events lost on the way are skipped); the same in `events` and
    /// `sessionEvents`. Null for events stored before sessions numbered them.
    async fn seq(&self) -> Option<i64> {
        self.0.seq
    }

    /// RFC 3339 with nanoseconds.
    async fn ts(&self) -> String {
        rfc3339_nanos(self.0.ts_ns)
    }

    async fn tracker(&self) -> &str {
        &self.0.tracker
    }

    async fn kind(&self) -> &str {
        &self.0.kind
    }

    async fn pid(&self) -> u32 {
        self.0.pid
    }

    async fn ppid(&self) -> u32 {
        self.0.ppid
    }

    async fn comm(&self) -> &str {
        &self.0.comm
    }

    async fn cgroup_id(&self) -> u64 {
        self.0.cgroup_id
    }

    /// Namespace inode numbers of the task.
    async fn user_ns(&self) -> Option<u64> {
        self.0.data["user_ns"].as_u64()
    }

    async fn pid_ns(&self) -> Option<u64> {
        self.0.data["pid_ns"].as_u64()
    }

    async fn mnt_ns(&self) -> Option<u64> {
        self.0.data["mnt_ns"].as_u64()
    }

    /// The container the event came from; null on the host.
    async fn container(&self) -> Option<EventContainer> {
        let text = |field: &str| self.0.data[field].as_str().map(str::to_string);
        Some(EventContainer {
            id: text("container_id")?,
            name: text("container").unwrap_or_default(),
            image: text("container_image"),
        })
    }

    /// Every field of the event, as JSON Lines has it.
    async fn data(&self) -> Json<serde_json::Value> {
        Json(self.0.data.clone())
    }
}

/// The container of an event, as it was when the event happened.
#[derive(SimpleObject)]
pub struct EventContainer {
    pub id: String,
    /// Its name, or its short id when the runtime gives none.
    pub name: String,
    pub image: Option<String>,
}

/// `bytes_sent` as GraphQL names fields: `bytesSent`.
fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `ProcessEvent` for the process tracker.
fn type_name_of(tracker: &str) -> String {
    let name = camel(tracker);
    let mut chars = name.chars();
    let first = chars.next().map(|c| c.to_uppercase().to_string());
    format!("{}{}Event", first.unwrap_or_default(), chars.as_str())
}

/// A tracker field as its type shows it: (GraphQL name, the catalog field, whether this
/// is the field's text rather than its number).
struct TypedField {
    name: String,
    field: &'static FieldInfo,
    text: bool,
}

/// Names the interface has: the common catalog fields, camelCased, and the API's own.
fn interface_names() -> Vec<String> {
    ["id", "seq", "data"]
        .into_iter()
        .map(str::to_string)
        .chain(COMMON_FIELDS.iter().map(|f| camel(f.name)))
        .collect()
}

/// The fields `info`'s type adds to the common ones.
fn typed_fields(info: &'static TrackerInfo) -> Vec<TypedField> {
    let taken = interface_names();
    let mut out = Vec::new();
    for field in info.fields {
        let mut name = camel(field.name);
        if taken.contains(&name) {
            name = camel(&format!("{}_{}", info.name, field.name));
        }
        let text = field.format.in_json().then(|| TypedField {
            name: format!("{name}Text"),
            field,
            text: true,
        });
        out.push(TypedField {
            name,
            field,
            text: false,
        });
        out.extend(text);
    }
    out
}

/// The GraphQL type of a typed field: every one can be null (not every kind of event
/// has every field).
fn graphql_type(f: &TypedField) -> &'static str {
    match (f.text, f.field.ty) {
        (true, _) | (_, FieldType::Str | FieldType::Time) => "String",
        (false, FieldType::U64 | FieldType::I64) => "Int",
    }
}

/// Each tracker's typed fields, by tracker name, made once.
fn typed_by_tracker() -> &'static HashMap<&'static str, Vec<TypedField>> {
    static TYPED: OnceLock<HashMap<&'static str, Vec<TypedField>>> = OnceLock::new();
    TYPED.get_or_init(|| {
        TRACKERS
            .iter()
            .map(|t| (t.info().name, typed_fields(t.info())))
            .collect()
    })
}

/// Most trackers the schema gives a type each (see [`TypedEvent`]).
const MAX_TRACKER_TYPES: usize = 32;

/// An event as the object type of the tracker at `TRACKERS[I]`. The executor asks a
/// type's name of the Rust type, not of the value, so each tracker's type needs a Rust
/// type of its own; the index makes one per tracker without a line per tracker here.
struct TypedEvent<'a, const I: usize>(&'a StoredEvent);

/// Evaluates `$body` with the constant `$i` set to `$index` (up to MAX_TRACKER_TYPES), so
/// that it can name `TypedEvent<$i>`; `$none` for an index past that.
macro_rules! with_tracker_index {
    ($index:expr, $i:ident => $body:expr, $none:expr) => {
        with_tracker_index!(@arms $index, $i, $body, $none;
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31)
    };
    (@arms $index:expr, $i:ident, $body:expr, $none:expr; $($n:literal)*) => {
        match $index {
            $($n => {
                const $i: usize = $n;
                $body
            })*
            _ => $none,
        }
    };
}

fn tracker_index(name: &str) -> Option<usize> {
    TRACKERS.iter().position(|t| t.info().name == name)
}

/// The object type of tracker `info`: the common fields, then its typed ones.
fn object_type(registry: &mut Registry, info: &'static TrackerInfo) -> MetaType {
    let mut object = registry.create_fake_output_type::<CommonFields<'static>>();
    if let MetaType::Object {
        name,
        description,
        fields,
        rust_typename,
        ..
    } = &mut object
    {
        let template = fields["comm"].clone();
        for typed in &typed_by_tracker()[info.name] {
            let mut meta = template.clone();
            meta.name = typed.name.clone();
            meta.ty = graphql_type(typed).to_string();
            meta.description = Some(if typed.text {
                format!("`{}` as people read it", typed.field.name)
            } else {
                typed.field.description.to_string()
            });
            fields.insert(typed.name.clone(), meta);
        }
        *name = type_name_of(info.name);
        *description = Some(format!("An event of the {} tracker.", info.name));
        *rust_typename = None;
    }
    object
}

impl<const I: usize> OutputType for TypedEvent<'_, I> {
    fn type_name() -> Cow<'static, str> {
        Cow::Owned(type_name_of(TRACKERS[I].info().name))
    }

    fn create_type_info(registry: &mut Registry) -> String {
        registry.create_output_type::<Self, _>(MetaTypeId::Object, |registry| {
            object_type(registry, TRACKERS[I].info())
        })
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve_container(ctx, self).await
    }
}

impl<const I: usize> ContainerType for TypedEvent<'_, I> {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        if let Some(value) = CommonFields(self.0).resolve_field(ctx).await? {
            return Ok(Some(value));
        }
        let wanted = ctx.item.node.name.node.as_str();
        let Some(typed) = typed_by_tracker()[TRACKERS[I].info().name]
            .iter()
            .find(|f| f.name == wanted)
        else {
            return Ok(None);
        };
        let key = if typed.text {
            Cow::Owned(format!("{}_text", typed.field.name))
        } else {
            Cow::Borrowed(typed.field.name)
        };
        Ok(Some(match self.0.data.get(key.as_ref()) {
            Some(json) => Value::from_json(json.clone()).unwrap_or(Value::Null),
            None => Value::Null,
        }))
    }
}

impl OutputType for EventObject {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("Event")
    }

    fn create_type_info(registry: &mut Registry) -> String {
        assert!(
            TRACKERS.len() <= MAX_TRACKER_TYPES,
            "raise MAX_TRACKER_TYPES and with_typed_event's arms to {} trackers",
            TRACKERS.len()
        );
        registry.create_output_type::<Self, _>(MetaTypeId::Interface, |registry| {
            let MetaType::Object { fields: common, .. } =
                registry.create_fake_output_type::<CommonFields<'static>>()
            else {
                unreachable!("a derived Object registers an object type")
            };
            let mut possible_types = async_graphql::indexmap::IndexSet::new();
            for index in 0..TRACKERS.len() {
                let name = with_tracker_index!(
                    index,
                    I => {
                        TypedEvent::<I>::create_type_info(registry);
                        TypedEvent::<I>::type_name().into_owned()
                    },
                    unreachable!("checked against MAX_TRACKER_TYPES above")
                );
                registry.add_implements(&name, "Event");
                possible_types.insert(name);
            }
            // The template was only a source of metadata.
            registry.types.remove(COMMON_TYPE);
            MetaType::Interface {
                name: "Event".to_string(),
                description: Some(
                    "An event: the fields every event has; each tracker's type (`... on \
                     TcpEvent`) adds its own."
                        .to_string(),
                ),
                fields: common,
                possible_types,
                extends: false,
                keys: None,
                visible: None,
                inaccessible: false,
                tags: Vec::new(),
                rust_typename: Some(std::any::type_name::<Self>()),
                directive_invocations: Vec::new(),
                requires_scopes: Vec::new(),
            }
        })
    }

    fn introspection_type_name(&self) -> Cow<'static, str> {
        Cow::Owned(type_name_of(&self.0.tracker))
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let index = tracker_index(&self.0.tracker).unwrap_or(usize::MAX);
        with_tracker_index!(
            index,
            I => OutputType::resolve(&TypedEvent::<I>(&self.0), ctx, field).await,
            Err(ServerError::new(
                format!("no event type for tracker `{}`", self.0.tracker),
                Some(field.pos),
            ))
        )
    }
}
