//! Which task paths may overlap: none that would make two writers race or
//! a signature depend on what a task wrote. An input inside an output is
//! refused (depend on the producer instead), an output inside an input too
//! (the input would change under its readers), two outputs that are the
//! same path or one inside the other (two writers, a random winner), and
//! any path inside `.runqueue`, where runqueue keeps its cache and logs.
//!
//! Knows task paths; knows nothing of files on disk.

use crate::graph::{is_within, GraphError, Task, RESERVED};

/// One path of one task: (path, task index, position in its list).
type Entry<'a> = (&'a str, usize, usize);

/// Paths sorted so that the few holding a given path are found quickly.
struct Holders<'a>(Vec<Entry<'a>>);

impl<'a> Holders<'a> {
    fn of(tasks: &'a [Task], list: impl Fn(&Task) -> &[String]) -> Holders<'a> {
        let mut all: Vec<Entry<'a>> = tasks
            .iter()
            .enumerate()
            .flat_map(|(i, t)| {
                list(t)
                    .iter()
                    .enumerate()
                    .map(move |(k, p)| (p.as_str(), i, k))
            })
            .collect();
        all.sort_unstable();
        Holders(all)
    }

    /// The paths equal to `path` or a directory above it.
    fn holding(&self, path: &'a str) -> Vec<Entry<'a>> {
        let mut found = Vec::new();
        let mut prefix = path;
        loop {
            let at = self.0.partition_point(|(p, ..)| *p < prefix);
            found.extend(self.0[at..].iter().take_while(|(p, ..)| *p == prefix));
            match prefix.rfind('/') {
                Some(slash) => prefix = &prefix[..slash],
                None => return found,
            }
        }
    }
}

/// Refuses overlapping inputs and outputs, and paths inside [`RESERVED`].
pub fn check(tasks: &[Task]) -> Result<(), GraphError> {
    check_reserved(tasks)?;
    let outputs = Holders::of(tasks, |t| &t.outputs);
    let inputs = Holders::of(tasks, |t| &t.inputs);
    for (i, t) in tasks.iter().enumerate() {
        for input in &t.inputs {
            if let Some(&(o, producer, _)) = outputs.holding(input).first() {
                return Err(GraphError::InputIsOutput {
                    task: t.id.clone(),
                    input: input.clone(),
                    producer: tasks[producer].id.clone(),
                    output: o.to_string(),
                });
            }
        }
        for (k, output) in t.outputs.iter().enumerate() {
            check_output(tasks, (output, i, k), &outputs, &inputs)?;
        }
    }
    Ok(())
}

fn check_output(
    tasks: &[Task],
    (output, i, k): Entry<'_>,
    outputs: &Holders<'_>,
    inputs: &Holders<'_>,
) -> Result<(), GraphError> {
    let task = || tasks[i].id.clone();
    let racing = |j: usize| j != i && !depends(tasks, i, j) && !depends(tasks, j, i);
    let other = outputs
        .holding(output)
        .into_iter()
        .find(|&(_, j, l)| (j == i && l != k) || racing(j));
    if let Some((o, j, _)) = other {
        return Err(GraphError::OutputsOverlap {
            task: task(),
            output: output.to_string(),
            other: tasks[j].id.clone(),
            other_output: o.to_string(),
        });
    }
    if let Some(&(input, reader, _)) = inputs.holding(output).first() {
        return Err(GraphError::OutputInInput {
            task: task(),
            output: output.to_string(),
            reader: tasks[reader].id.clone(),
            input: input.to_string(),
        });
    }
    Ok(())
}

/// Whether task `i` depends on task `j`, directly or not. Called only for
/// overlapping outputs, which are rare; a cycle (refused later) ends the
/// walk too.
fn depends(tasks: &[Task], i: usize, j: usize) -> bool {
    let mut seen = vec![false; tasks.len()];
    let mut stack = vec![i];
    while let Some(at) = stack.pop() {
        for d in &tasks[at].deps {
            let d = d.index();
            if d == j {
                return true;
            }
            if !std::mem::replace(&mut seen[d], true) {
                stack.push(d);
            }
        }
    }
    false
}

fn check_reserved(tasks: &[Task]) -> Result<(), GraphError> {
    for t in tasks {
        let fields = t.inputs.iter().map(|p| ("input", p));
        for (field, path) in fields.chain(t.outputs.iter().map(|p| ("output", p))) {
            if is_within(path, RESERVED) {
                return Err(GraphError::Reserved {
                    task: t.id.clone(),
                    field,
                    path: path.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::graph::Graph;

    fn err(json: &str) -> String {
        Graph::parse(json).unwrap_err().to_string()
    }

    #[test]
    fn ordered_tasks_may_nest_outputs_unordered_ones_may_not() {
        let nested = |deps: &str| {
            format!(
                r#"{{"version":1,"tasks":[{{"id":"unpack","outputs":["w"]}},
                {{"id":"mid"}},
                {{"id":"configure","deps":[{deps}],"outputs":["w/config.h"]}}]}}"#
            )
        };
        assert!(Graph::parse(&nested(r#""unpack""#)).is_ok());
        let through = r#"{"version":1,"tasks":[{"id":"unpack","outputs":["w"]},
            {"id":"mid","deps":["unpack"]},
            {"id":"configure","deps":["mid"],"outputs":["w"]}]}"#;
        assert!(
            Graph::parse(through).is_ok(),
            "ordered through another task"
        );
        assert!(err(&nested(r#""mid""#)).contains("their writes would race"));
        let twice = r#"{"version":1,"tasks":[{"id":"a","outputs":["o","./o"]}]}"#;
        assert!(err(twice).contains("output \"o\" is also an output of task \"a\""));
    }
}
